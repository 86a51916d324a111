"""``BigGANSAN``: :class:`san_core.SAN` over D's SAN layers, wired to BigGAN's ``D.optim``.

After every real ``D.optim.step()`` (the optimizer's step post-hook; ``Adam16`` is an ``Optimizer``
subclass, so it has them too) each selected ``W`` is divided by its constant, computed in float32 even
for an fp16 D. Two BigGAN specifics on top of ``san_core``:

- the constant each layer was divided by is written into its ``sv0`` buffer (``utils.get_SVs`` logs it);
- ``Adam16`` keeps an fp32 master copy of each fp16 weight (``state["fp32_p"]``) and overwrites the
  weight from it at its next step. So for such layers the constant is computed from the master (the
  fp16 weight is its rounding: its constant is off by up to ~1e-3), the master is divided by it in place,
  and the fp16 weight is re-cast from the master; the masters then sit at 1 to float32 precision.
  During the call the Parameter's ``.data`` is the master, which ``Adam16`` creates once and updates in
  place (only the fp16 tensor is new at each step: ``p.data = fp32_p.half()``), so san_core's sync-free
  plans stay keyed to the same Parameter, master storage and float32: only the first ``Adam16`` step
  re-plans (the data was the fp16 weight before), later calls are sync-free; a master replaced by a new
  tensor (e.g. a reloaded optimizer state) re-plans that layer (tests/test_biggan_adam16_sync_free.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional, Union, cast

import torch
from torch import Tensor, nn

from san_core import SAN, unwrap_model

from .layers import SANLayer
from .options import SANOptions

#: Optimizer-state keys that hold an fp32 master copy of a low-precision Parameter (BigGAN's Adam16).
MASTER_COPY_KEYS: tuple[str, ...] = ("fp32_p",)


class BigGANSAN:
    """SAN of the named layers of ``module`` (a BigGAN D), normalizing once per attached optimizer step.

    Args:
        module: the discriminator (``DataParallel`` wrappers are unwrapped).
        layer_names: SAN layers (:class:`~san_biggan.layers.SANLayer`) to normalize.
        options: :class:`SANOptions`.
        example_input: ``(x, y)`` run once to learn each conv's input size; the weights are then
            normalized at once. Without it (and without complete ``input_sizes``) each layer is
            normalized just before its first forward pass instead.
        input_sizes: ``{conv name: (H, W)}``.
    """

    def __init__(
        self,
        module: nn.Module,
        layer_names: Sequence[str],
        options: SANOptions,
        *,
        example_input: Union[Tensor, tuple, None] = None,
        input_sizes: Optional[dict[str, Sequence[int]]] = None,
    ) -> None:
        self.module = unwrap_model(module)
        self.options = options
        named = dict(self.module.named_modules())
        not_san = [n for n in layer_names if not isinstance(named.get(n), SANLayer)]
        if not_san:
            raise ValueError(f"BigGANSAN: expected SAN layers (SANConv2d/SANLinear/SANEmbedding), got {not_san}")
        convs = [n for n in layer_names if isinstance(named[n], nn.Conv2d)]
        sizes_known = example_input is not None or all(n in (input_sizes or {}) for n in convs)
        self.san = SAN(
            self.module,
            list(layer_names),
            **options.san_kwargs(),
            example_input=example_input,
            input_sizes=input_sizes,
            normalize_at_first_forward=not sizes_known,
        )
        self.optimizers: list[torch.optim.Optimizer] = []
        self._handles: list[Any] = []
        self._renormalize_loaded = True
        try:
            if sizes_known:
                self.normalize_(force=True)
            self._handles.append(self.module.register_load_state_dict_post_hook(self._after_load))
        except BaseException:
            self.remove()
            raise

    def __repr__(self) -> str:
        return f"BigGANSAN({len(self.san.layers)} layers, {self.options})"

    @property
    def layers(self) -> dict[str, nn.Module]:
        return self.san.layers

    def attach(self, optimizer: torch.optim.Optimizer) -> Any:
        """Normalize after every real ``optimizer.step()``; returns the removable hook handle."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"BigGANSAN.attach: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if any(opt is optimizer for opt in self.optimizers):
            raise RuntimeError("BigGANSAN.attach: this optimizer is already attached")

        def after_step(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
            found_inf = kwargs.get("found_inf") if kwargs else None
            if found_inf is not None and bool(found_inf):
                return
            self.normalize_()

        handle = optimizer.register_step_post_hook(after_step)
        self.optimizers.append(optimizer)
        self._handles.append(handle)
        return handle

    def normalize_(self, *, force: bool = False) -> dict[str, Tensor]:
        """:meth:`san_core.SAN.normalize_` on the Adam16 masters where there are any, then re-cast the fp16
        weights from them and write ``sv0``; returns the constants."""
        masters = self._masters()
        low_precision: dict[str, Tensor] = {}
        with torch.no_grad():
            for name, master in masters.items():  # SAN computes the master's constant and divides the master
                weight = cast(Tensor, self.san.layers[name].weight)
                low_precision[name], weight.data = weight.data, master
        try:
            constants = self.san.normalize_(force=force)
        finally:
            with torch.no_grad():
                for name, data in low_precision.items():
                    self.san.layers[name].weight.data = data
                    data.copy_(masters[name])
        for name, constant in constants.items():
            cast(SANLayer, self.san.layers[name]).record_constant_(constant)  # __init__ checked: SAN layers
        return constants

    def _masters(self) -> dict[str, Tensor]:
        """``{layer: fp32 master copy}`` for the SAN layers whose weight an attached optimizer keeps one of."""
        out = {}
        for name, layer in self.san.layers.items():
            weight = cast(Tensor, layer.weight)
            for optimizer in self.optimizers:
                state = optimizer.state.get(weight)
                for key in MASTER_COPY_KEYS:
                    master = state.get(key) if state else None
                    if isinstance(master, Tensor) and master.shape == weight.shape and master is not weight:
                        out[name] = master
        return out

    @contextmanager
    def restoring(self) -> Iterator[None]:
        """While restoring a SAN checkpoint: loaded weights are taken as they are (no renormalization).

        Outside it, ``D.load_state_dict`` rescales the loaded ``W`` once, since they may come from an SN
        run; a SAN run's ``W`` must instead stay bit-identical to what was saved (between normalizations,
        every ``interval``-th step, they are not normalized).
        """
        previous, self._renormalize_loaded = self._renormalize_loaded, False
        try:
            yield
        finally:
            self._renormalize_loaded = previous

    def _after_load(self, module: nn.Module, incompatible: Any) -> None:
        if self._renormalize_loaded:
            self.normalize_loaded()

    def normalize_loaded(self) -> dict[str, Tensor]:
        """Rescale loaded weights (which may come from an SN checkpoint) once; not counted as a D step.

        Layers whose conv input size is still unknown normalize themselves at their first forward instead.
        """
        if all(n in self.san.input_sizes for n, m in self.san.layers.items() if isinstance(m, nn.Conv2d)):
            return self.normalize_(force=True)
        return {}

    def constants(self) -> dict[str, Tensor]:
        """Every layer's current constant (changes no weight; draws new subsets when ``r < 1``)."""
        return self.san.constants()

    def describe(self) -> list[dict[str, Any]]:
        """Per layer: name, type, shape, input size, last constant."""
        return self.san.describe()

    def report(self) -> str:
        """A table of the SAN layers, one per line."""
        rows = self.describe()
        lines = [f"SAN layers of {type(self.module).__name__} ({len(rows)}), {self.options}:"]
        for row in rows:
            size = "x".join(map(str, row["input_size"])) if row["input_size"] else "-"
            const = f"{row['constant']:.4f}" if row["constant"] is not None else "at first forward"
            lines.append(f"  {row['name']:<28} {row['type']:<13} {tuple(row['shape'])!s:<20} in {size:<7} c={const}")
        return "\n".join(lines)

    def state_dict(self) -> dict[str, Any]:
        return self.san.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.san.load_state_dict(state)

    def remove(self) -> list[str]:
        """Detach every hook and release the layers (weights keep their values)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.optimizers.clear()
        return self.san.remove()
