"""``SAN``: owns per-layer state and rescales a critic's weights in place (``W ← W / ‖W‖₀,∞``)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from . import _dft, _reparam
from ._attach import AttachHandle, attach_after_real_steps
from ._validate import check_config, check_form, check_layer, check_layer_gains, check_size
from .padding import PaddingRecord
from .spectral_norm import SpectralNormRecord
from .spectrum import conv_constant, linear_constant
from .targets import Patterns, resolve, select_layers

_APPLIED: weakref.WeakKeyDictionary[nn.Module, SAN] = weakref.WeakKeyDictionary()
_STATE_VERSION = 1


_weight = _reparam.raw_weight


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DataParallel``/``DistributedDataParallel``-style wrappers (``.module`` chains)."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers) or type(model).__name__.endswith("DistributedDataParallel"):
        inner = model.module
        assert isinstance(inner, nn.Module)
        model = inner
    return model


class SAN:
    """Sparsity Aware Normalization of the selected layers of ``module``, in place.

    Convs are divided by ``‖W‖₀,∞`` (Lemma 1, :func:`conv_constant` on each conv's input map size),
    Linear/Embedding layers by their top singular value ``σ₁``. Constructing it changes no values;
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
            from every forward pass (forward pre-hooks record the latest size).
        example_input: a tensor (or tuple of positional args) to run once, in eval mode under
            ``no_grad``, to learn the sizes; training flags are restored afterwards.
        normalize_at_first_forward: each layer normalizes itself just before its first use.
        linear_method, n_power_iter: ``"svd"`` (exact) or ``"power"`` (persistent vector ``u``).
        method, max_memory: the conv constant's algorithm and its transient-memory bound (bytes).
        form: ``"rescale"`` (default): ``W ← W / c`` in place. ``"reparametrize"`` (the authors' code):
            the forward uses ``W / s`` with ``s`` a buffer set to ``c`` of the raw ``W`` at each
            normalization (no gradient through ``s``; see :mod:`san_core._reparam`). Constants,
            :meth:`describe` and ``last_constants`` are those of the raw weight in both forms.
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
    ) -> None:
        check_config(
            interval, filter_ratio, gain, stride_mode, eps, linear_method, n_power_iter, method, max_memory, seed
        )
        check_form(form)
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
        self.input_sizes: dict[str, tuple[int, ...]] = {}
        for name, size in (input_sizes or {}).items():
            conv = self.layers.get(name)
            if not isinstance(conv, nn.modules.conv._ConvNd):
                raise ValueError(f"SAN: input_sizes names {name!r}, which is not a selected conv layer")
            self.input_sizes[name] = check_size(name, conv, size)
        self.calls = 0
        self.last_constants: dict[str, Tensor] = {}
        self.generator = torch.Generator().manual_seed(seed)
        self.power_vectors: dict[str, Tensor] = {}
        self._pending = set(self.layers) if normalize_at_first_forward else set()
        self._handles: list[Any] = []
        self._attached: list[AttachHandle] = []
        self._records: list[Union[PaddingRecord, SpectralNormRecord]] = []
        self.scales: dict[str, _reparam.InverseScale] = {}
        for name, layer in self.layers.items():
            _APPLIED[layer] = self
            self._handles.append(layer.register_forward_pre_hook(self._make_pre_hook(name)))
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

    # ----------------------------------------------------------------------------------------- sizes
    def _make_pre_hook(self, name: str):
        def hook(layer: nn.Module, args: tuple) -> None:
            if isinstance(layer, nn.modules.conv._ConvNd) and args and isinstance(args[0], Tensor):
                size = tuple(args[0].shape[-(_weight(layer).dim() - 2) :])
                if self.input_sizes.get(name) != size:
                    self.input_sizes[name] = check_size(name, layer, size)
            if name in self._pending:
                self._rescale(self.constants([name]))
                self._pending.discard(name)

        return hook

    def _probe(self, example_input: Union[Tensor, tuple]) -> None:
        flags = {m: m.training for m in self.module.modules()}
        pending, self._pending = self._pending, set()
        try:
            self.module.eval()
            with torch.no_grad():
                self.module(*example_input) if isinstance(example_input, tuple) else self.module(example_input)
        finally:
            self._pending = pending
            for m, flag in flags.items():
                m.training = flag

    # -------------------------------------------------------------------------------------- compute
    def _constant(self, name: str) -> Tensor:
        g_l = self.config["layer_gains"].get(name)
        constant = self._base_constant(name)
        return constant if g_l is None else constant * g_l

    def _base_constant(self, name: str) -> Tensor:
        layer = self.layers[name]
        weight = _weight(layer)
        cfg = self.config
        if isinstance(layer, nn.modules.conv._ConvNd):
            return conv_constant(
                weight,
                self.input_sizes[name],
                stride=layer.stride,
                dilation=layer.dilation,
                groups=layer.groups,
                transposed=isinstance(layer, nn.modules.conv._ConvTransposeNd),
                stride_mode=cfg["stride_mode"],
                filter_ratio=cfg["filter_ratio"],
                gain=cfg["gain"],
                generator=self.generator,
                method=cfg["method"],
                max_memory=cfg["max_memory"],
            )
        if cfg["linear_method"] == "power":
            u = self.power_vectors.get(name)
            if u is None:
                dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
                u = self.power_vectors[name] = torch.ones(weight.shape[0], dtype=dtype, device=weight.device)
            return linear_constant(weight, method="power", u=u, n_iter=cfg["n_power_iter"])
        return linear_constant(weight)

    def constants(self, names: Optional[Sequence[str]] = None) -> dict[str, Tensor]:
        """The constants of ``names`` (default: every selected layer) before any rescale; changes no weight.

        Checks first that every weight is finite and every conv's input size is known. With
        ``filter_ratio < 1`` it draws new subsets and with ``linear_method="power"`` it advances the
        power iteration, like a normalization does; on any error both are rolled back.
        """
        names = list(self.layers) if names is None else list(names)
        self._check_ready(names)
        rng_state = self.generator.get_state()
        vectors = {n: u.clone() for n, u in self.power_vectors.items()}
        try:
            constants = {name: self._constant(name) for name in names}
            self._check_finite(constants)
        except BaseException:
            self.generator.set_state(rng_state)
            for n in set(self.power_vectors) - set(vectors):
                del self.power_vectors[n]
            for n, u in vectors.items():
                self.power_vectors[n].copy_(u)
            raise
        return constants

    def set_layer_gains(self, layer_gains: Optional[Mapping[str, float]]) -> dict[str, float]:
        """Replace the per-layer factors ``g_l`` (``None``: all 1); returns the previous ones. No weight changes
        until the next normalization (call ``normalize_(force=True)`` to apply them now)."""
        gains = check_layer_gains(layer_gains, self.layers)
        previous, self.config["layer_gains"] = self.config["layer_gains"], gains
        return previous

    def _check_ready(self, names: Sequence[str]) -> None:
        for name in names:
            if isinstance(self.layers[name], nn.modules.conv._ConvNd) and name not in self.input_sizes:
                raise RuntimeError(
                    f"SAN: input size of conv {name!r} is unknown; run a forward pass first, or pass "
                    f"example_input=... or input_sizes={{{name!r}: (H, W)}}"
                )
        with torch.no_grad():
            flags = torch.stack([torch.isfinite(_weight(self.layers[n])).all().cpu() for n in names])
        if not bool(flags.all()):
            bad = [n for n, ok in zip(names, flags.tolist()) if not ok]
            raise ValueError(f"SAN: layers {bad} have NaN/Inf weights; nothing was changed")

    def _check_finite(self, constants: Mapping[str, Tensor]) -> None:
        flags = torch.stack([torch.isfinite(c).cpu() for c in constants.values()])
        if not bool(flags.all()):
            bad = [n for n, ok in zip(constants, flags.tolist()) if not ok]
            raise ValueError(f"SAN: NaN/Inf constant for layers {bad} (overflow?); nothing was changed")

    def _rescale(self, constants: Mapping[str, Tensor]) -> None:
        """``W ← W / c`` (form ``"rescale"``) or ``s ← c`` (``"reparametrize"``), ``c`` clamped to ``eps``."""
        with torch.no_grad():
            for name, constant in constants.items():
                scale = self.scales.get(name)
                if scale is not None:
                    scale.s.copy_(constant.clamp_min(self.config["eps"]))
                else:
                    weight = _weight(self.layers[name])
                    weight.div_(constant.clamp_min(self.config["eps"]).to(weight.dtype))

    def normalize_(self, *, force: bool = False) -> dict[str, Tensor]:
        """Count a call; on every ``interval``-th (or when ``force``), divide each weight by its constant.

        All constants are computed and checked before any weight changes. Returns ``{name: constant
        before the rescale}`` ( ``{}`` when this call was skipped). Forced calls are not counted.
        """
        if not force and (self.calls + 1) % self.config["interval"]:
            self.calls += 1
            return {}
        constants = self.constants()  # raises before any change (and before counting) on bad state
        if not force:
            self.calls += 1
        self._rescale(constants)
        self._pending.clear()
        self.last_constants = {n: c.detach() for n, c in constants.items()}
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
        """Everything needed to resume bit-for-bit (weights live in the model's own state dict)."""
        return {
            "version": _STATE_VERSION,
            "layers": list(self.layers),
            "config": {**self.config, "layer_gains": dict(self.config["layer_gains"])},
            "calls": self.calls,
            "generator": self.generator.get_state(),
            "power_vectors": {n: u.detach().cpu().clone() for n, u in self.power_vectors.items()},
            "input_sizes": dict(self.input_sizes),
            "pending": sorted(self._pending),
            "scales": {n: m.s.detach().cpu().clone() for n, m in self.scales.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises ``ValueError`` (changing nothing) on a mismatch."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"SAN.load_state_dict: expected version {_STATE_VERSION}, got {state.get('version')!r}")
        if list(state["layers"]) != list(self.layers):
            missing = sorted(set(self.layers) - set(state["layers"]))
            extra = sorted(set(state["layers"]) - set(self.layers))
            raise ValueError(f"SAN.load_state_dict: layers differ; missing from state {missing}, unexpected {extra}")
        sizes = {n: check_size(n, self.layers[n], s) for n, s in state["input_sizes"].items()}  # type: ignore[arg-type]
        gains = check_layer_gains(state["config"].get("layer_gains"), self.layers)
        form = state["config"].get("form", "rescale")
        if form != self.config["form"]:
            raise ValueError(f"SAN.load_state_dict: the state is of form {form!r}, this SAN of {self.config['form']!r}")
        scales = dict(state.get("scales", {}))
        if set(scales) != set(self.scales):
            raise ValueError(f"SAN.load_state_dict: expected scales for {sorted(self.scales)}, got {sorted(scales)}")
        self.config.update(state["config"])
        self.config["layer_gains"] = gains
        self.calls = int(state["calls"])
        self.generator.set_state(state["generator"])
        self.power_vectors = {
            n: u.to(_weight(self.layers[n]).device).clone() for n, u in state["power_vectors"].items()
        }
        self.input_sizes.update(sizes)
        self._pending = set(state.get("pending", ()))
        with torch.no_grad():
            for n, value in scales.items():
                self.scales[n].s.copy_(value)

    def describe(self) -> list[dict[str, Any]]:
        """Per layer: name, type, weight shape, input size, last constant (``None`` before any)."""
        return [
            {
                "name": n,
                "type": type(layer).__name__,
                "shape": tuple(_weight(layer).shape),
                "input_size": self.input_sizes.get(n),
                "constant": float(self.last_constants[n]) if n in self.last_constants else None,
            }
            for n, layer in self.layers.items()
        ]
