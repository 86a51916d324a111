"""``patch_discriminator``: SAN instead of spectral norm on a built SPADE discriminator, with an exact inverse.

After :func:`patch_discriminator` the selected convs hold plain weights ``W`` (the former ``weight_orig``,
same Parameter objects) that :class:`san_core.SAN` divides in place by ``‖W‖₀,∞`` (or the subset maximum
times ``g``) after each real ``optimizer_D`` step; they pad circularly; spectral-norm checkpoints still
load (``weight_orig/weight_u/weight_v → weight``; with ``form="reparametrize"`` → the raw weight
``parametrizations.weight.original``, ``s`` keeping D's own value until SAN's next normalization).
Nothing outside D is touched.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from san_core import (
    SAN,
    apply_san,
    convert_spectral_norm_state_dict,
    to_reparametrized_keys,
    unwrap_model,
)

from .errors import SanSpadeError
from .options import SanSpadeOptions
from .plan import LayerPlan, plan_layers

STATE_FORMAT = "san_spade/1"
_SN_SUFFIXES = (
    "weight_orig",
    "weight_u",
    "weight_v",
    "parametrizations.weight.original",
    "parametrizations.weight.0._u",
    "parametrizations.weight.0._v",
)
_MATH_KEYS: tuple[str, ...] = ("filter_ratio", "gain", "include_first_last", "drop_instance_norm")
_MATH_KEYS += ("circular_padding", "interval", "seed", "stride_mode", "exclude", "form")
_REPARAM = "parametrizations.weight."
_SESSIONS: weakref.WeakKeyDictionary[nn.Module, SpadeSAN] = weakref.WeakKeyDictionary()


def session_for(netD: nn.Module) -> Optional[SpadeSAN]:
    """The :class:`SpadeSAN` patching ``netD`` (wrappers unwrapped), or ``None``."""
    return _SESSIONS.get(unwrap_model(netD))


def active_sessions() -> list[SpadeSAN]:
    """Every live patch (one per patched discriminator)."""
    return list(_SESSIONS.values())


class SpadeSAN:
    """A patched SPADE discriminator: the plan, the :class:`san_core.SAN` and what it replaced.

    Use :func:`patch_discriminator` to build one; :meth:`remove` restores D exactly.
    """

    def __init__(self, netD: nn.Module, options: SanSpadeOptions, plan: LayerPlan, san: SAN) -> None:
        self.netD = netD
        self.options = options
        self.plan = plan
        self.san = san
        self.resumed = False
        self.started = False
        self.converted_layers: list[str] = []
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._dropped: list[tuple[nn.Module, str, nn.Module]] = []
        self._load_hook: Any = None

    def __repr__(self) -> str:
        return f"SpadeSAN({len(self.san.layers)} convs of {type(self.netD).__name__}; {self.options.summary()})"

    # ------------------------------------------------------------------------------ wiring
    def attach(self, optimizer: torch.optim.Optimizer) -> Any:
        """Normalize once after every real step of ``optimizer`` (SPADE's ``optimizer_D``)."""
        owned = {id(p) for p in self.netD.parameters()}
        if not any(id(p) in owned for group in optimizer.param_groups for p in group["params"]):
            raise SanSpadeError("SAN must attach to the discriminator's optimizer; this one holds no D parameter")
        self.optimizer = optimizer
        return self.san.attach(optimizer)

    def _convert_sn_keys(self, module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
        converted = []
        for name in self.san.layers:
            head = f"{prefix}{name}."
            keys = [k for k in state_dict if k.startswith(head) and k[len(head) :] in _SN_SUFFIXES]
            reparametrized = parametrize.is_parametrized(self.san.layers[name], "weight")
            has_scale = f"{head}{_REPARAM}0.s" in state_dict
            if has_scale != reparametrized and (has_scale or f"{head}weight" in state_dict):
                saved, now = ("rescale", "reparametrize") if reparametrized else ("reparametrize", "rescale")
                raise SanSpadeError(f"the D checkpoint is of --san-form {saved} (layer {name}), this run's is {now}")
            if reparametrized and f"{head}{_REPARAM}0.s" in state_dict:
                continue  # a checkpoint of SAN's own reparametrized form, not spectral norm
            if keys:  # reparametrized: the SN weight is SAN's raw W; s stays D's own until the next normalization
                plain = convert_spectral_norm_state_dict({k: state_dict.pop(k) for k in keys})
                like = {f"{head}{k}": v for k, v in self.san.layers[name].state_dict().items()}
                state_dict.update(to_reparametrized_keys(plain, like))
                converted.append(name)
        self.converted_layers = converted

    # ------------------------------------------------------------------------------ start
    def probe(self, spatial_size: Sequence[int]) -> None:
        """Run D once on zeros of ``(1, C, H, W)`` (eval, no grad) so SAN learns every conv's input size."""
        first = next(m for m in self.netD.modules() if isinstance(m, nn.Conv2d))
        x = torch.zeros(1, first.in_channels, *spatial_size, dtype=first.weight.dtype, device=first.weight.device)
        flags = {m: m.training for m in self.netD.modules()}
        try:
            self.netD.eval()
            with torch.no_grad():
                self.netD(x)
        finally:
            for m, flag in flags.items():
                m.training = flag

    def peek_constants(self) -> dict[str, Tensor]:
        """The constants SAN would divide by now (:meth:`san_core.SAN.constants`: each conv's max over every input
        size it has seen, subsets drawn as the next normalization will draw them); SAN's subset generator is left
        as it was (D's SAN layers are convs: no power vectors to advance)."""
        rng_state = self.san.generator.get_state()
        try:
            return self.san.constants()
        finally:
            self.san.generator.set_state(rng_state)

    def start(self, spatial_size: Sequence[int]) -> str:
        """Before the first training step: learn input sizes; unless resumed, normalize once; return the report."""
        self.probe(spatial_size)
        if self.resumed:
            constants, what = self.peek_constants(), "constant now (resumed)"
        else:
            constants, what = self.san.normalize_(force=True), "constant before the initial normalization"
        self.started = True
        return self.report(constants, what)

    def report(self, constants: Optional[dict[str, Tensor]] = None, what: str = "constant") -> str:
        """The patched-layers table: name, shape, input size, constant (from ``san.describe()``)."""
        rows = self.san.describe()
        lines = [f"san_spade: SAN normalizes {len(rows)} D convs ({self.options.summary()}):"]
        lines.append(f"  {'layer':<34} {'weight shape':<18} {'input':<10} {what}")
        for row in rows:
            size = "x".join(map(str, row["input_size"])) if row["input_size"] else "?"
            constant = constants.get(row["name"]) if constants else None
            value = row["constant"] if constant is None else float(constant)
            shown = "-" if value is None else f"{value:.6g}"
            notes = []
            if row["name"] in self.plan.spectral_norm:
                notes.append("spectral norm removed")
            if row["name"] in self.plan.norms_to_drop:
                notes.append("InstanceNorm dropped")
            extra = f"  [{', '.join(notes)}]" if notes else ""
            lines.append(f"  {row['name']:<34} {row['shape']!s:<18} {size:<10} {shown}{extra}")
        kept = [n for n in self.plan.first_last if n not in self.san.layers] + self.plan.excluded
        if kept:
            lines.append(f"  left as they are: {', '.join(kept)}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """SAN's state (counter, subset generator, input sizes), the options and the layer table."""
        return {
            "format": STATE_FORMAT,
            "san": self.san.state_dict(),
            "options": asdict(self.options),
            "layers": self.san.describe(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume exactly from :meth:`state_dict`; refuses a file written with other SAN settings."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise SanSpadeError(f"expected a SAN state of format {STATE_FORMAT!r}, got {got!r}")
        saved, now = state["options"], asdict(self.options)
        diff = {k: (saved.get(k), now[k]) for k in _MATH_KEYS if _as_tuple(saved.get(k)) != _as_tuple(now[k])}
        if diff:
            shown = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise SanSpadeError(f"the SAN checkpoint was written with other SAN settings ({shown})")
        try:
            self.san.load_state_dict(state["san"])
        except (ValueError, KeyError) as err:
            raise SanSpadeError(f"cannot resume SAN state: {err}") from None
        self.resumed = True

    # ------------------------------------------------------------------------------ undo
    def remove(self) -> None:
        """Undo everything: SAN hooks, dropped norms, circular padding, spectral norm, the load hook."""
        if self._load_hook is not None:
            self._load_hook.remove()
            self._load_hook = None
        for parent, key, norm in reversed(self._dropped):
            parent._modules[key] = norm
        self._dropped.clear()
        self.san.remove()
        if _SESSIONS.get(self.netD) is self:
            del _SESSIONS[self.netD]


def _as_tuple(value: Any) -> Any:
    """Lists (as JSON/torch.load may return) compare equal to tuples."""
    return tuple(value) if isinstance(value, list) else value


def patch_discriminator(netD: nn.Module, options: Optional[SanSpadeOptions] = None) -> SpadeSAN:
    """Replace spectral norm by SAN on SPADE's discriminator ``netD`` in place (G/E untouched).

    Selects the middle convs (plus first/last with ``include_first_last``), strips their spectral
    norm, switches them to circular padding, optionally drops the InstanceNorm after them, builds
    :class:`san_core.SAN` and lets spectral-norm state dicts load into D. Checks everything first;
    on any error D is left exactly as it was and :class:`SanSpadeError` is raised.
    """
    options = options or SanSpadeOptions()
    inner = unwrap_model(netD)
    if inner in _SESSIONS:
        raise SanSpadeError(f"this {type(inner).__name__} is already patched by {_SESSIONS[inner]!r}; remove() first")
    plan = plan_layers(inner, options)
    try:
        san = apply_san(
            inner,
            plan.selected,
            circular_padding=options.circular_padding,
            strip_spectral_norm=True,
            **options.san_kwargs(),
        )
    except (ValueError, RuntimeError) as err:
        raise SanSpadeError(f"cannot patch the discriminator: {err}") from None
    session = SpadeSAN(inner, options, plan, san)
    named = dict(inner.named_modules())
    for norm_name in plan.norms_to_drop.values():
        parent_name, _, key = norm_name.rpartition(".")
        parent = named[parent_name] if parent_name else inner
        norm = parent._modules[key]
        assert norm is not None  # plan_layers found an InstanceNorm module there
        session._dropped.append((parent, key, norm))
        parent._modules[key] = nn.Identity()
    session._load_hook = inner.register_load_state_dict_pre_hook(session._convert_sn_keys)
    _SESSIONS[inner] = session
    return session
