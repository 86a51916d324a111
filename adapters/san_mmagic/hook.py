"""``SANHook``: Sparsity Aware Normalization of an MMEngine model's critic, as a registered hook.

Add to any MMagic GAN config (``custom_imports = dict(imports=['san_mmagic'], allow_failed_imports=False)``)::

    custom_hooks = [dict(type='SANHook', module='discriminator')]

Lifecycle (MMEngine calls ``before_run`` -> weight init -> load/resume -> ``before_train``):

- ``before_run``: finds ``model.<module>`` (DDP and ``MMSeparateDistributedDataParallel`` unwrapped with
  ``is_model_wrapper``), strips spectral norm from the selected layers (torch's via san_core,
  mmagic's class-style via :mod:`san_mmagic.class_sn`), switches their convs to circular padding and
  builds :class:`san_core.SAN`. Doing it before loading lets SAN checkpoints load with matching keys.
- ``after_load_checkpoint``: restores ``checkpoint['san']``; without it (e.g. an SN baseline's
  checkpoint), warns, maps the SAN layers' spectral-norm keys (``weight_orig`` -> ``weight``) and proceeds.
  After the weights are loaded (``before_train``), a restored state is checked against them
  (:mod:`san_mmagic.resume_check`): layers off 1 by more than ``resume_tolerance`` are normalized, with a warning.
- ``before_train``: attaches SAN to ``runner.optim_wrapper[<optim_wrapper>].optimizer``: every real
  critic ``optimizer.step()`` then divides each weight by its constant (``W ← W / ‖W‖₀,∞`` for
  convs, ``W ← W / σ₁`` for linear/embedding); accumulation iterations (no ``step``) and AMP-skipped
  steps do not count. A fresh run normalizes each layer once before its first forward.
- ``after_train_iter``: every ``log_interval`` iterations, ``SAN.check()`` (raises the sync-free path's delayed
  NaN/Inf error), then the constants of the last normalization (before rescale) go to the MessageHub as
  ``train/san/<layer>`` (logged as ``san/<layer>``).
- ``diagnostics=True`` (default off: no hooks): ``before_train`` puts forward hooks on the critic and generator
  (:mod:`san_mmagic.diagnostics`); their device-side means go out with the constants (same transfer) as
  ``san_diag/d_abs_mean`` and ``san_diag/g_pixel_std``; ``after_train`` / ``after_run`` remove the hooks.
- ``after_train_epoch`` / ``after_train``: ``SAN.check()`` (one host sync), so the delayed error surfaces even with
  ``log_interval=0`` (an ``IterBasedTrainLoop`` has one "epoch": its end).
- ``before_save_checkpoint``: ``checkpoint['san']`` = the SAN state (call count, RNG, input sizes); taking it
  calls ``SAN.check()``, so a checkpoint is never written after an unreported NaN/Inf.
"""

from __future__ import annotations

from typing import Any, Optional, cast

import torch
from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop
from torch import nn

from san_core import SAN, apply_san, select_layers, spectral_norm_style

from .class_sn import ClassSpectralNormRecord, class_spectral_norm_base, strip_class_spectral_norm_
from .diagnostics import CollapseDiagnostics
from .hook_options import Patterns, check_flag, check_patterns, check_san_options
from .resume_check import renormalize_if_needed, weight_norms
from .sn_keys import map_spectral_norm_keys
from .weights import check_local_weights

CHECKPOINT_KEY = "san"
DEFAULT_LOG_INTERVAL = 50


def find_submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.<path>`` with model wrappers removed at every level (the MMEngine idiom, ``is_model_wrapper``)."""
    # a model wrapper holds the wrapped nn.Module as .module
    inner = cast(nn.Module, model.module) if is_model_wrapper(model) else model
    sub: nn.Module = inner
    for part in path.split("."):
        child = sub._modules.get(part) if isinstance(sub, nn.Module) else None
        if child is None:
            raise ValueError(
                f"SANHook: model {type(inner).__name__} has no submodule {path!r}; its top-level children are "
                f"{list(inner._modules)}"
            )
        sub = cast(nn.Module, child.module) if is_model_wrapper(child) else child
    return sub


@HOOKS.register_module()
class SANHook(Hook):
    """Sparsity Aware Normalization (Kligvasser & Michaeli, AAAI 2021) of ``model.<module>``.

    Args:
        module: dotted name of the critic inside the model (``'discriminator'``).
        targets: glob patterns of the layers to normalize (``include`` is an alias); None = every
            Conv/Linear/Embedding layer of the critic.
        exclude: glob patterns of layers to leave alone.
        interval: normalize after every ``interval``-th real critic optimizer step.
        filter_ratio: ``r``, the fraction of kernels ``w_ij`` whose spectrum is searched (1 = exact).
        gain: ``g``, multiplies the subset maximum (None = Eq. 9's compensation for ``r``).
        stride_mode: ``'paper'`` or ``'exact'`` constants for strided convs (see san_core).
        circular_padding: switch the selected convs to circular padding (Lemma 1 is exact under it).
        strip_spectral_norm: remove torch's and mmagic's class-style spectral norm from the selected layers.
        seed: seeds the kernel-subset generator (same subsets on every rank).
        optim_wrapper: key of the critic's optimizer in ``runner.optim_wrapper`` (default: ``module``).
        log_interval: iterations between ``san/<layer>`` scalars (None = the LoggerHook's interval; 0 = off).
        layer_gains: ``{layer name in the critic: g_l}``, divides those layers by ``g_l`` times their constant
            (experimental, beyond the paper: e.g. the JSON of ``san-inspect --gains-out``); saved with the SAN state.
        resume_tolerance: after resuming with a SAN state, layers whose weights do not match it (their saved norms;
            for older checkpoints with ``filter_ratio=1``, constants off 1 by more than this) are normalized, with a
            warning; None = no check.
        form, sync_free, compile_step, cuda_graph: as in :class:`san_core.SAN` (``"rescale"`` or the authors'
            ``"reparametrize"``; ``sync_free=None``: on for CUDA weights). With the sync-free path, a NaN/Inf weight
            or constant is reported by ``SAN.check()``, which the hook calls every ``log_interval`` iterations, at
            each epoch end, before each checkpoint save and after training (also with ``log_interval=0``).
        diagnostics: log, every ``log_interval`` iterations (not with 0), ``san_diag/d_abs_mean`` (``mean |D(x)|``
            over the critic's training-mode calls since the last log) and ``san_diag/g_pixel_std`` (the mean over
            pixels of ``x.std(dim=0)`` of the generator's outputs, averaged likewise; none without a ``generator``).
            Project rule (benchmarks/README.md): collapsed when ≥ 80 % of the samples fall in one class or that std is
            below 10 % of the real images'; the hook logs the raw std, it does not classify. MMagic logs G/D losses.
    """

    priority = "ABOVE_NORMAL"  # before NORMAL hooks (EMAHook copies the model in before_run), far above CheckpointHook

    def __init__(
        self,
        module: str = "discriminator",
        targets: Patterns = None,
        exclude: Patterns = None,
        interval: int = 1,
        filter_ratio: float = 1.0,
        gain: Optional[float] = None,
        stride_mode: str = "paper",
        circular_padding: bool = True,
        strip_spectral_norm: bool = True,
        seed: int = 0,
        optim_wrapper: Optional[str] = None,
        log_interval: Optional[int] = None,
        include: Patterns = None,
        layer_gains: Optional[dict[str, float]] = None,
        resume_tolerance: Optional[float] = 0.1,
        form: str = "rescale",
        sync_free: Optional[bool] = None,
        compile_step: bool = False,
        cuda_graph: bool = False,
        diagnostics: bool = False,
    ) -> None:
        if not isinstance(module, str) or not module or any(not p for p in module.split(".")):
            raise ValueError(f"SANHook: expected module to be a dotted submodule name, got {module!r}")
        if targets is not None and include is not None:
            raise ValueError(f"SANHook: give targets or include, not both (got {targets!r} and {include!r})")
        if optim_wrapper is not None and (not isinstance(optim_wrapper, str) or not optim_wrapper):
            raise ValueError(f"SANHook: expected optim_wrapper to be None or a key string, got {optim_wrapper!r}")
        if log_interval is not None and (
            isinstance(log_interval, bool) or not isinstance(log_interval, int) or log_interval < 0
        ):
            raise ValueError(f"SANHook: expected log_interval to be None or an int >= 0, got {log_interval!r}")
        self.module = module
        self.targets = check_patterns(
            "include" if include is not None else "targets", targets if include is None else include
        )
        self.exclude = check_patterns("exclude", exclude)
        self.circular_padding = check_flag("circular_padding", circular_padding)
        self.strip_spectral_norm = check_flag("strip_spectral_norm", strip_spectral_norm)
        self.diagnostics = check_flag("diagnostics", diagnostics)
        self.optim_wrapper = optim_wrapper or module.rsplit(".", 1)[-1]
        self.log_interval = log_interval
        self.san_kwargs = dict(
            interval=interval, filter_ratio=filter_ratio, gain=gain, stride_mode=stride_mode, seed=seed, form=form,
            sync_free=sync_free, compile_step=compile_step, cuda_graph=cuda_graph,
        )  # fmt: skip
        check_san_options(self.san_kwargs, layer_gains, resume_tolerance)
        self.resume_tolerance = resume_tolerance
        self.renormalized_after_load: dict[str, float] = {}
        self._check_after_load, self._saved_norms = False, None
        self.layer_gains = dict(layer_gains or {})
        self.san: Optional[SAN] = None
        self.class_sn: Optional[ClassSpectralNormRecord] = None
        self._critic: Optional[nn.Module] = None
        self._handle: Any = None
        self._diag: Optional[CollapseDiagnostics] = None

    # ------------------------------------------------------------------------------------------ setup
    def before_run(self, runner: Any) -> None:
        """Strip SN, set circular padding and build SAN on the critic (before weights are loaded)."""
        if isinstance(getattr(runner, "_train_loop", None), BaseLoop) and getattr(runner, "cfg", None):
            check_local_weights(runner.cfg)  # training: fail before init/loading reads a missing file
        critic = find_submodule(runner.model, self.module)
        if self.san is not None and self._critic is critic:
            return  # train() then test() on one runner: already set up
        matched = select_layers(critic, self.targets, exclude=self.exclude).matched
        named = dict(critic.named_modules())
        class_style = [n for n in matched if class_spectral_norm_base(named[n]) is not None]
        if class_style and not self.strip_spectral_norm:
            raise ValueError(
                f"SANHook: layers {class_style} use class-style spectral norm (e.g. mmagic's SNConv2d); set "
                "strip_spectral_norm=True or exclude them"
            )
        torch_sn = [n for n in matched if spectral_norm_style(named[n]) is not None]
        record = strip_class_spectral_norm_(critic, class_style)
        try:
            self.san = apply_san(
                critic,
                matched,
                circular_padding=self.circular_padding,
                strip_spectral_norm=self.strip_spectral_norm,
                normalize_at_first_forward=True,
                layer_gains=self.layer_gains,
                **self.san_kwargs,  # type: ignore[arg-type]
            )
        except BaseException:
            record.restore()
            raise
        self.class_sn, self._critic = record, critic
        print_log(
            f"SANHook: {len(matched)} layers of {self.module} ({type(critic).__name__}) under SAN; spectral norm "
            f"removed from {len(torch_sn) + len(class_style)}, circular padding "
            f"{'on' if self.circular_padding else 'off'}",
            logger="current",
        )

    def before_train(self, runner: Any) -> None:
        """Attach SAN to the critic's optimizer (after any resume has rebuilt and loaded it)."""
        if self.san is None:
            self.before_run(runner)
        assert self.san is not None
        wrappers = runner.optim_wrapper
        if not isinstance(wrappers, OptimWrapperDict) or self.optim_wrapper not in wrappers:
            got = list(wrappers.keys()) if isinstance(wrappers, OptimWrapperDict) else type(wrappers).__name__
            raise ValueError(
                f"SANHook: expected runner.optim_wrapper to hold a {self.optim_wrapper!r} entry, got {got}; set "
                "optim_wrapper=... to the critic's key"
            )
        if self._check_after_load:  # the loaded weights against the restored SAN state (resume_check.py)
            self._check_after_load = False
            tolerance = float(self.resume_tolerance or 0)
            self.renormalized_after_load = renormalize_if_needed(self.san, self._saved_norms, tolerance)
        if self._handle is None:
            self._handle = self.san.attach(wrappers[self.optim_wrapper].optimizer)
        if self.log_interval is None:
            loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
            self.log_interval = loggers[0].interval if loggers else DEFAULT_LOG_INTERVAL
        if self.diagnostics and self.log_interval and self._diag is None:
            self._diag = CollapseDiagnostics.of_model(runner.model, self.module, find_submodule)

    def after_run(self, runner: Any) -> None:
        """Detach from the optimizer, remove the diagnostics' hooks; the critic keeps its SAN form (no SN, circular)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._remove_diagnostics()

    def _remove_diagnostics(self) -> None:
        if self._diag is not None:
            self._diag.remove()
            self._diag = None

    # ---------------------------------------------------------------------------------------- logging
    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Put the latest per-layer constants (before rescale) on the MessageHub as ``train/san/<layer>``, and the
        diagnostics' means since the last log as ``train/san_diag/<name>``, read in one transfer."""
        if self.san is None or not self.log_interval:
            return
        if self.every_n_train_iters(runner, self.log_interval) or self.is_last_train_iter(runner):
            self.san.check()  # the sync-free path's delayed NaN/Inf error (one host sync), at the logging interval
            scalars = {f"train/san/{n}": c for n, c in self.san.last_constants.items()}
            scalars.update({f"train/{n}": v for n, v in (self._diag.take() if self._diag else {}).items()})
            if scalars:
                device = next(iter(scalars.values())).device
                values = torch.stack([v.float().to(device) for v in scalars.values()]).cpu().tolist()
                runner.message_hub.update_scalars(dict(zip(scalars, values)))

    def after_train_epoch(self, runner: Any) -> None:
        """``SAN.check()`` (one host sync): the sync-free path's delayed NaN/Inf error, whatever ``log_interval``."""
        if self.san is not None:
            self.san.check()

    def after_train(self, runner: Any) -> None:
        """Remove the diagnostics' hooks; ``SAN.check()`` again (for a train loop without ``after_train_epoch``)."""
        self._remove_diagnostics()
        if self.san is not None:
            self.san.check()

    # ------------------------------------------------------------------------------------ checkpoints
    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Save the SAN state with the checkpoint (the normalized weights are in ``state_dict``)."""
        if self.san is not None:
            state, norms = self.san.state_dict(), weight_norms(self.san)
            checkpoint[CHECKPOINT_KEY] = dict(module=self.module, state=state, weight_norms=norms)

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Restore the SAN state; a checkpoint without one warns, has its SN keys mapped, and proceeds."""
        if self.san is None:
            self.before_run(runner)
        assert self.san is not None
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is not None:
            if saved.get("module") != self.module:
                raise ValueError(
                    f"SANHook: checkpoint's SAN state is for module {saved.get('module')!r}, this hook normalizes "
                    f"{self.module!r}"
                )
            self.san.load_state_dict(saved["state"])
            self._check_after_load, self._saved_norms = self.resume_tolerance is not None, saved.get("weight_norms")
            return
        print_log(
            "SANHook: the checkpoint has no SAN state (saved without SANHook?); proceeding: each SAN layer is "
            "normalized before its first forward",
            logger="current",
            level=30,
        )
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            checkpoint["state_dict"] = map_spectral_norm_keys(state, self.san, self.module)
