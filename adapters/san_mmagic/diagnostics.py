"""Collapse diagnostics for :class:`SANHook` (``diagnostics=True``): forward hooks that keep device-side running
means of the critic's ``mean |D(x)|`` and of the generator's per-pixel std across the batch.

Each training-mode call adds one device scalar to a running sum (the count is a Python int): no ``.item()``, no host
copy per step. :meth:`CollapseDiagnostics.take` hands the means since the previous take back as device scalars (the
hook reads them at its logging interval, in the transfer it already makes for the SAN constants) and resets them.
The project's collapse rule (benchmarks/README.md): a run is collapsed when ≥ 80 % of its samples fall in one class or
the per-pixel std is below 10 % of the real images'; these are raw values, nothing here classifies.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from mmengine.logging import print_log
from torch import Tensor, nn

D_ABS_MEAN = "san_diag/d_abs_mean"
G_PIXEL_STD = "san_diag/g_pixel_std"


def first_tensor(out: Any) -> Optional[Tensor]:
    """What a diagnostic reads of a module's output: a floating tensor, the first item of a tuple/list, or a dict's
    ``'fake_img'`` (mmagic generators with ``return_noise=True``); None otherwise (that call is not counted)."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    elif isinstance(out, dict):
        out = out.get("fake_img")
    return out if isinstance(out, Tensor) and out.is_floating_point() else None


def abs_mean(x: Tensor) -> Tensor:
    """``mean |D(x)|`` of one critic call (a device scalar)."""
    return x.detach().float().abs().mean()


def pixel_std(x: Tensor) -> Optional[Tensor]:
    """``mean over (c, h, w) of std_n x[n, c, h, w]``: the per-pixel std across the batch (unbiased, like the
    benchmarks' collapse rule), a device scalar; None for a batch of one (no spread to measure)."""
    if x.dim() < 2 or x.shape[0] < 2:
        return None
    return x.detach().float().std(dim=0).mean()


class RunningMean:
    """A sum of device scalars and a host count: :meth:`add` never syncs; :meth:`take` returns the mean and resets."""

    def __init__(self) -> None:
        self.total: Optional[Tensor] = None
        self.count = 0

    def add(self, value: Tensor) -> None:
        self.total = value if self.total is None else self.total + value.to(self.total.device)
        self.count += 1

    def take(self) -> Optional[Tensor]:
        mean = None if self.total is None else self.total / self.count
        self.total, self.count = None, 0
        return mean


class CollapseDiagnostics:
    """Forward hooks on the critic (``D_ABS_MEAN``) and, when there is one, the generator (``G_PIXEL_STD``).

    Only calls in training mode count (a validation loop's or an EMA copy's sampling does not); with MMagic's
    ``BaseGAN`` that is every critic call of the D and G steps (real and fake images) and every generator call.
    """

    def __init__(self, critic: nn.Module, generator: Optional[nn.Module]) -> None:
        self.means: dict[str, RunningMean] = {}
        self.handles = [self._register(critic, D_ABS_MEAN, abs_mean)]
        if generator is not None:
            self.handles.append(self._register(generator, G_PIXEL_STD, pixel_std))

    def _register(self, module: nn.Module, name: str, reduce: Callable[[Tensor], Optional[Tensor]]) -> Any:
        mean = self.means[name] = RunningMean()

        def hook(module: nn.Module, args: Any, out: Any) -> None:
            x = first_tensor(out) if module.training else None
            value = None if x is None else reduce(x)
            if value is not None:
                mean.add(value)

        return module.register_forward_hook(hook)

    @classmethod
    def of_model(
        cls, model: nn.Module, critic: str, find: Callable[[nn.Module, str], nn.Module]
    ) -> CollapseDiagnostics:
        """On ``model.<critic>`` and the ``generator`` beside it, both found by ``find`` (``SANHook``'s lookup, which
        unwraps DDP); without a generator, the critic's alone, with one info log."""
        path = ".".join([*critic.split(".")[:-1], "generator"])
        try:
            generator: Optional[nn.Module] = find(model, path)
        except ValueError:
            print_log(f"SANHook: diagnostics: the model has no {path!r}; no {G_PIXEL_STD} is logged", logger="current")
            generator = None
        return cls(find(model, critic), generator)

    def take(self) -> dict[str, Tensor]:
        """Each diagnostic's mean over the calls since the previous take (device scalars; none without calls)."""
        taken = {name: mean.take() for name, mean in self.means.items()}
        return {name: value for name, value in taken.items() if value is not None}

    def remove(self) -> None:
        """Remove the forward hooks (idempotent)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
