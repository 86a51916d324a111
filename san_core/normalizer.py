"""``SAN``: owns per-layer state and rescales a critic's weights in place (``W ← W / ‖W‖₀,∞``).

Its input-size bookkeeping (:class:`san_core._input_sizes.InputSizes`) and its eager path
(:class:`san_core._eager_path.EagerPath`: constants checked on the host, then applied) are bases of ``SAN``; the
sync-free path is :class:`san_core._sync_free.SyncFreeEngine`, the state :mod:`san_core._state`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from . import _dft, _reparam, _sizes, _state, _tied
from ._attach import AttachHandle, attach_after_real_steps
from ._eager_path import EagerPath
from ._input_sizes import InputSizes
from ._sync_free import SyncFreeEngine
from ._unwrap import unwrap_model
from ._validate import (
    check_config,
    check_form,
    check_layer,
    check_layer_gains,
    check_optimizer,
    check_sync_options,
)
from .padding import PaddingRecord
from .spectral_norm import SpectralNormRecord
from .targets import Patterns, resolve, select_layers

_APPLIED: weakref.WeakKeyDictionary[nn.Module, SAN] = weakref.WeakKeyDictionary()
_STATE_VERSION = 1


_weight = _reparam.raw_weight


class SAN(InputSizes, EagerPath):
    """Sparsity Aware Normalization of the selected layers of ``module``, in place.

    Convs are divided by ``‖W‖₀,∞`` (Lemma 1, :func:`conv_constant` on each conv's input map size),
    Linear/Embedding layers by their top singular value ``σ₁``; a weight shared by several selected layers is divided
    once, by the largest of their constants (:mod:`san_core._tied`). Constructing it changes no values;
    :meth:`normalize_` rescales, :meth:`attach` runs it after every real optimizer step, and
    :meth:`remove` undoes everything it (and :func:`apply_san`) installed.

    Args:
        module: the critic (DDP wrappers are unwrapped).
        targets, exclude: glob patterns on layer names (see :func:`select_layers`).
        interval: normalize every ``interval``-th call of :meth:`normalize_` (optimizer steps).
        filter_ratio, gain, stride_mode: as in :func:`conv_constant` (``r``, ``g``).
        layer_gains: ``{layer name: g_l}``, a per-layer factor on the constant of the named layers
            (beyond the paper, its future-work idea: e.g. from :func:`gain_from_sparsity`); others use 1.
            Change it later with :meth:`set_layer_gains`; it is part of :meth:`state_dict`.
        seed: seeds the kernel-subset generator (same subsets on every DDP rank).
        eps: the constant is clamped to at least ``eps`` (zero weights).
        input_sizes: ``{layer name: spatial size}``; otherwise learned from ``example_input`` or
            from every forward pass (forward pre-hooks record each size a conv sees; its constant is the max
            over its recorded sizes, see :mod:`san_core._sizes` and :meth:`forget_sizes`).
        example_input: a tensor (or tuple of positional args) to run once, in eval mode under
            ``no_grad``, to learn the sizes; training flags are restored afterwards.
        normalize_at_first_forward: each layer normalizes itself just before its first use.
        linear_method, n_power_iter: ``"svd"`` (exact) or ``"power"`` (persistent vector ``u``).
        method, max_memory: the conv constant's algorithm and its transient-memory bound (bytes).
        form: ``"rescale"`` (default): ``W ← W / c`` in place. ``"reparametrize"`` (the authors' code):
            the forward uses ``W / s`` with ``s`` a buffer set to ``c`` of the raw ``W`` at each
            normalization (no gradient through ``s``; see :mod:`san_core._reparam`). Constants,
            :meth:`describe` and ``last_constants`` are those of the raw weight in both forms.
        sync_free: ``None`` (default): on for CUDA weights, off on CPU. On: after a warm-up call, each
            normalization runs with fixed shapes and **no host–device sync** (:mod:`san_core._sync_free`);
            a layer whose weight or constant is NaN/Inf is left unchanged on the device and the
            ``ValueError`` naming it is raised **later**, at the next :meth:`check`, :meth:`state_dict`
            or :meth:`describe` (the call itself is counted). Off: every call checks first and raises
            at once, changing nothing.
        compile_step: run the sync-free step through ``torch.compile(fullgraph=True)``.
        cuda_graph: capture the sync-free step into a CUDA graph after its warm-up and replay it
            (re-captured when a size, dtype or device changes); CUDA weights only. With ``filter_ratio < 1``
            the kernel subsets are still drawn on the host (the same draws as without the graph) and copied
            into the graph's fixed index buffers before each replay.

    Attributes:
        config: every option above except the layer selection and the size sources (``targets``, ``exclude``,
            ``input_sizes``, ``example_input``, ``normalize_at_first_forward``), as given (``layer_gains`` as
            checked), so ``SAN(other, targets, **san.config)`` configures another critic the same way. Read it;
            change ``layer_gains`` with :meth:`set_layer_gains`. :meth:`state_dict` carries all of it but the
            run-time choices ``sync_free``, ``compile_step`` and ``cuda_graph`` (they depend on where a run
            happens), which loading a state leaves as this SAN has them.
    """

    def __init__(
        self,
        module: nn.Module,
        targets: Patterns = None,
        *,
        exclude: Patterns = None,
        interval: int = 1,
        filter_ratio: float = 1.0,
        gain: Optional[float] = None,
        layer_gains: Optional[Mapping[str, float]] = None,
        stride_mode: str = "paper",
        seed: int = 0,
        eps: float = 1e-12,
        input_sizes: Optional[Mapping[str, Sequence[int]]] = None,
        example_input: Union[Tensor, tuple, None] = None,
        normalize_at_first_forward: bool = False,
        linear_method: str = "svd",
        n_power_iter: int = 1,
        method: str = "auto",
        max_memory: int = _dft.DEFAULT_MAX_MEMORY,
        form: str = "rescale",
        sync_free: Optional[bool] = None,
        compile_step: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        check_config(
            interval, filter_ratio, gain, stride_mode, eps, linear_method, n_power_iter, method, max_memory, seed
        )
        check_form(form)
        check_sync_options(sync_free, compile_step, cuda_graph)
        self.module = unwrap_model(module)
        self.config: dict[str, Any] = dict(
            interval=interval,
            filter_ratio=filter_ratio,
            gain=gain,
            stride_mode=stride_mode,
            seed=seed,
            eps=eps,
            linear_method=linear_method,
            n_power_iter=n_power_iter,
            method=method,
            max_memory=max_memory,
            form=form,
            sync_free=sync_free,
            compile_step=compile_step,
            cuda_graph=cuda_graph,
        )
        self.layers: dict[str, nn.Module] = dict(
            resolve(self.module, select_layers(self.module, targets, exclude=exclude).matched)
        )
        for name, layer in self.layers.items():
            owner = _APPLIED.get(layer)
            if owner is not None:
                raise RuntimeError(f"SAN: layer {name!r} is already normalized by {owner!r}; call .remove() first")
            check_layer(name, layer)
        self.config["layer_gains"] = check_layer_gains(layer_gains, self.layers)
        self._init_sizes(input_sizes)  # input_sizes (latest per conv), seen_sizes (all recorded): _input_sizes.py
        self.calls = 0
        self.last_constants: dict[str, Tensor] = {}
        self.generator = torch.Generator().manual_seed(seed)
        self.power_vectors: dict[str, Tensor] = {}
        self._pending = set(self.layers) if normalize_at_first_forward else set()
        self._handles: list[Any] = []
        self._attached: list[AttachHandle] = []
        self._records: list[Union[PaddingRecord, SpectralNormRecord]] = []
        self._engine = SyncFreeEngine(self, compile_step=compile_step, cuda_graph=cuda_graph)
        self.scales: dict[str, _reparam.InverseScale] = {}
        for name, layer in self.layers.items():
            _sizes.purge_inert_hooks(layer)  # a deep copy's / unpickled model's hooks of another SAN
            _APPLIED[layer] = self
            self._handles.append(layer.register_forward_pre_hook(_sizes.SizeHook(self, name)))
            if form == "reparametrize":
                self.scales[name] = _reparam.install(layer)
        if example_input is not None:
            try:
                self._probe(example_input)
            except BaseException:
                self.remove()
                raise

    def __repr__(self) -> str:
        return f"SAN({len(self.layers)} layers of {type(self.module).__name__}, interval={self.config['interval']})"

    # ------------------------------------------------------------------------------------- first use
    def _normalize_pending(self, name: str) -> None:
        """``normalize_at_first_forward``: layer ``name`` (with the layers tied to it that have a size) before its
        first use; called by the forward pre-hook (:meth:`InputSizes._on_forward`) after recording the size."""
        groups = _tied.tied_groups(self.layers)
        names = [n for n in _tied.with_tied([name], groups) if n == name or n in self.sizes_known()]
        self._rescale(_tied.combine(self.constants(names), groups))
        self._pending.difference_update(_tied.with_tied([name], groups))

    # -------------------------------------------------------------------------------------- compute
    def set_layer_gains(self, layer_gains: Optional[Mapping[str, float]]) -> dict[str, float]:
        """Replace the per-layer factors ``g_l`` (``None``: all 1); returns the previous ones. No weight changes
        until the next normalization (call ``normalize_(force=True)`` to apply them now)."""
        gains = check_layer_gains(layer_gains, self.layers)
        previous, self.config["layer_gains"] = self.config["layer_gains"], gains
        return previous

    def check(self) -> None:
        """Raise the ``ValueError`` of the sync-free path, naming the layers that had a NaN/Inf weight or constant
        (and were left unchanged) since the last check; one host sync. Eager normalizations raise at once."""
        self._engine.check()

    def pruning_stats(self) -> dict[str, dict[str, int]]:
        """Per conv of the sync-free path: kernels ``evaluated`` on the full grid of ``total``, and the steps whose
        pruning was ``unverified`` (a certified upper bound was used; the layer is re-planned); calls :meth:`check`."""
        return self._engine.pruning_stats()

    def sync_free_active(self) -> bool:
        """Whether :meth:`normalize_` takes the sync-free path now (``sync_free=None``: the weights are on CUDA)."""
        return self._engine.active()

    def normalize_(self, *, force: bool = False) -> dict[str, Tensor]:
        """Count a call; on every ``interval``-th (or when ``force``), divide each weight by its constant.

        All constants are computed and checked before any weight changes (sync-free path: a layer with
        a NaN/Inf weight or constant is left unchanged and reported by the next :meth:`check`). Returns
        ``{name: constant before the rescale}`` (``{}`` when this call was skipped). Forced calls are not counted.
        """
        if not force and (self.calls + 1) % self.config["interval"]:
            self.calls += 1
            return {}
        if self.sync_free_active():
            stale = self._engine.stale()
            if stale:  # warm-up: checks and plans (host syncs), then the sync-free step
                self._check_ready(list(self.layers))
                self._engine.prepare(stale)
            constants = self._engine.step()
        else:
            constants = self.constants()  # raises before any change (and before counting) on bad state
            self._rescale(constants)
        if not force:
            self.calls += 1
        self._pending.clear()
        # no detach op where none is needed (constants come from no_grad code): one dispatched op per layer less
        self.last_constants = {n: c.detach() if c.requires_grad else c for n, c in constants.items()}
        return constants

    # -------------------------------------------------------------------------------------- wiring
    def attach(self, optimizer: torch.optim.Optimizer) -> AttachHandle:
        """Run :meth:`normalize_` once after every real ``optimizer.step()``; returns a removable handle.

        Accumulation iterations do not call ``step()``; a ``GradScaler`` that finds inf/NaN skips
        ``step()``, or marks the skip for optimizers that handle scaling themselves (fused Adam:
        ``optimizer.found_inf``; a ``found_inf``/``grad_scaler`` step kwarg): none of these count. A
        ``step`` that calls a hooked parent ``step`` (``super().step()``) still counts once.
        """
        if any(h.optimizer is optimizer and h.active for h in self._attached):
            raise RuntimeError("SAN.attach: this optimizer is already attached; remove its handle first")
        check_optimizer(optimizer, self.module)
        handle = attach_after_real_steps(optimizer, self.normalize_)
        self._attached.append(handle)
        return handle

    def remove(self, *, fold_scale: bool = False) -> list[str]:
        """Detach all hooks, release the layers and undo what :func:`apply_san` changed; returns layer names.

        In the ``"reparametrize"`` form the parametrization goes too and each layer gets back its class
        and its ``weight`` Parameter object holding the raw weight ``W`` (default), or ``W / s`` written
        into it with ``fold_scale=True`` (what the forward used). The ``"rescale"`` form ignores it.
        """
        for handle in [*self._handles, *self._attached]:
            handle.remove()
        self._handles.clear()
        self._attached.clear()
        for name, scale in self.scales.items():
            _reparam.uninstall(self.layers[name], scale, fold_scale=fold_scale)
        self.scales.clear()
        for layer in self.layers.values():
            if _APPLIED.get(layer) is self:
                del _APPLIED[layer]
        for record in reversed(self._records):
            record.restore()
        self._records.clear()
        return list(self.layers)

    # --------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-for-bit (weights live in the model's own state dict); calls :meth:`check`."""
        self.check()
        return _state.state_dict(self, _STATE_VERSION)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises ``ValueError`` (changing nothing) on a mismatch. The sync-free plans are
        rebuilt at the next call (a warm-up)."""
        _state.load_state_dict(self, state, _STATE_VERSION)
        self._engine.entries.clear()

    def describe(self) -> list[dict[str, Any]]:
        """Per layer: name, type, weight shape, input size (the latest), every recorded input size, the layers sharing
        its weight (``tied_with``), last constant (``None`` before any); calls :meth:`check`."""
        self.check()
        groups = _tied.tied_groups(self.layers)
        return [
            {
                "name": n,
                "type": type(layer).__name__,
                "shape": tuple(_weight(layer).shape),
                "input_size": self.input_sizes.get(n),
                "input_sizes": self.sizes_of(n),
                "tied_with": [m for m in groups.get(n, ()) if m != n],
                "constant": float(self.last_constants[n]) if n in self.last_constants else None,
            }
            for n, layer in self.layers.items()
        ]
