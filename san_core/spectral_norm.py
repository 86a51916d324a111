"""Removing torch's spectral norm (hook- and parametrization-style) in place, with an exact inverse.

The un-normalized weight Parameter (``weight_orig`` / ``parametrizations.weight.original``) becomes
``weight`` itself – the same Parameter object, so optimizers and their state keep working – and
its values are left as they are (SAN rescales them on its first normalization).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm
from torch.nn.utils.spectral_norm import (
    SpectralNorm,
    SpectralNormLoadStateDictPreHook,
    SpectralNormStateDictHook,
)

from .targets import Patterns, select_layers

_HOOK_KEYS = ("_forward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks")


def spectral_norm_style(layer: nn.Module, name: str = "weight") -> str | None:
    """``"hook"`` (``torch.nn.utils.spectral_norm``), ``"parametrization"`` or ``None``."""
    if any(isinstance(h, SpectralNorm) and h.name == name for h in layer._forward_pre_hooks.values()):
        return "hook"
    plists: Any = getattr(layer, "parametrizations", None)
    if parametrize.is_parametrized(layer, name) and any(isinstance(p, _SpectralNorm) for p in plists[name]):
        return "parametrization"
    return None


@dataclass
class _Saved:
    style: str
    state: dict[str, Any]


@dataclass
class SpectralNormRecord:
    """What :func:`strip_spectral_norm_` removed, per layer name; ``restore()`` puts it back exactly."""

    module: nn.Module
    removed: dict[str, _Saved] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.removed)

    def restore(self) -> list[str]:
        """Re-install every removed spectral norm (same hooks, u/v buffers, Parameter and class)."""
        named = dict(self.module.named_modules())
        for name, saved in self.removed.items():
            layer = named[name]
            weight = layer._parameters.pop("weight")
            if saved.style == "hook":
                layer.__dict__["weight"] = saved.state["weight"]  # plain attribute, recomputed by the hook
                layer._parameters["weight_orig"] = weight
                for key in ("weight_u", "weight_v"):
                    layer._buffers[key] = saved.state[key]
                for key in _HOOK_KEYS:
                    merged = saved.state[key].copy()
                    merged.update(getattr(layer, key))  # hooks added since keep their place after these
                    getattr(layer, key).clear()
                    getattr(layer, key).update(merged)
            else:
                layer._modules["parametrizations"] = saved.state["parametrizations"]
                layer.__class__ = saved.state["class"]
        restored, self.removed = list(self.removed), {}
        return restored


def strip_spectral_norm_(
    module: nn.Module, targets: Patterns = None, *, exclude: Patterns = None
) -> SpectralNormRecord:
    """Remove torch spectral norm from the selected layers in place; returns the record to undo it.

    Layers without spectral norm are ignored. Everything is checked before anything changes: a
    parametrization chain other than spectral norm alone on ``weight`` raises ``ValueError``.
    """
    selection = select_layers(module, targets, exclude=exclude, what="strip_spectral_norm_")
    named = dict(module.named_modules())
    styles = {n: spectral_norm_style(named[n]) for n in selection.matched}
    found = {n: s for n, s in styles.items() if s is not None}
    for name, style in found.items():
        layer = named[name]
        if style == "parametrization":
            plist: Any = layer.parametrizations
            if list(plist.keys()) != ["weight"] or len(plist["weight"]) != 1:
                chains = {k: [type(p).__name__ for p in v] for k, v in plist.items()}
                raise ValueError(
                    f"strip_spectral_norm_: layer {name!r} has parametrizations {chains}; expected "
                    "spectral norm alone on 'weight'"
                )
    record = SpectralNormRecord(module)
    for name, style in found.items():
        layer = named[name]
        if style == "hook":
            state = {k: getattr(layer, k).copy() for k in _HOOK_KEYS}
            state.update(weight_u=layer._buffers.pop("weight_u"), weight_v=layer._buffers.pop("weight_v"))
            for key in _HOOK_KEYS:
                kept = {
                    k: h
                    for k, h in getattr(layer, key).items()
                    if not isinstance(h, (SpectralNorm, SpectralNormStateDictHook, SpectralNormLoadStateDictPreHook))
                    and not _is_sn_hook(h)
                }
                getattr(layer, key).clear()
                getattr(layer, key).update(kept)
            state["weight"] = layer.__dict__.pop("weight")
            layer._parameters["weight"] = layer._parameters.pop("weight_orig")
        else:
            state = {"class": type(layer), "parametrizations": layer._modules.pop("parametrizations")}
            original = state["parametrizations"]["weight"].original
            layer.__class__ = type(layer).__bases__[0]
            layer._parameters["weight"] = original
        record.removed[name] = _Saved(style, state)
    return record


def _is_sn_hook(hook: Any) -> bool:
    """State-dict hooks are stored wrapped (e.g. in partials / weakref-style holders) in some versions."""
    inner = getattr(hook, "func", None) or getattr(hook, "hook", None)
    return isinstance(inner, (SpectralNormStateDictHook, SpectralNormLoadStateDictPreHook))


_HOOK_SN_KEY = re.compile(r"^((?:.*\.)?)weight_(orig|u|v)$")
_PARAM_SN_KEY = re.compile(r"^((?:.*\.)?)parametrizations\.weight\.(original|0\._u|0\._v)$")


def convert_spectral_norm_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Turn a spectral-norm checkpoint into a plain one: ``X.weight_orig`` and
    ``X.parametrizations.weight.original`` become ``X.weight``; ``u``/``v`` vectors are dropped.

    Keys count as spectral norm only when a prefix has the whole triple (``weight_orig``/``weight_u``/
    ``weight_v``, or ``parametrizations.weight.original``/``.0._u``/``.0._v``); anything else (plain
    parameters with such names, other parametrizations) passes through unchanged. The returned dict is
    new; tensors are shared, not copied.
    """
    patterns = ((_HOOK_SN_KEY, {"orig", "u", "v"}), (_PARAM_SN_KEY, {"original", "0._u", "0._v"}))
    sn_prefixes: list[set[str]] = []
    for pattern, triple in patterns:
        parts: dict[str, set[str]] = {}
        for key in state_dict:
            found = pattern.match(key)
            if found:
                parts.setdefault(found.group(1), set()).add(found.group(2))
        sn_prefixes.append({p for p, seen in parts.items() if seen == triple})
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        match = None
        for (pattern, _), prefixes in zip(patterns, sn_prefixes):
            found = pattern.match(key)
            if found is not None and found.group(1) in prefixes:
                match = found
        if match is None:
            out[key] = value
        elif match.group(2) in ("orig", "original"):
            out[f"{match.group(1)}weight"] = value
    return out


_REPARAM = "parametrizations.weight."


def to_reparametrized_keys(state_dict: Mapping[str, Tensor], like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Fit a plain state dict (e.g. from :func:`convert_spectral_norm_state_dict`) to a critic in SAN's
    ``form="reparametrize"``: ``X.weight`` becomes ``X.parametrizations.weight.original`` (the raw ``W``) wherever
    ``like`` (the target module's state dict) holds layer ``X`` in that form, i.e. has that key and SAN's
    ``X.parametrizations.weight.0.s`` and no ``X.weight`` (another parametrization, e.g. torch's SN, is left to
    its owner); ``X.parametrizations.weight.0.s`` is the state's own if it has one, else ``like``'s (the critic
    keeps its ``s`` until SAN's next normalization). Other keys pass unchanged; key order is kept; the returned
    dict is new, tensors are shared.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        head = key[: -len("weight")]
        scale = f"{head}{_REPARAM}0.s"
        if key.endswith("weight") and key not in like and f"{head}{_REPARAM}original" in like and scale in like:
            out[f"{head}{_REPARAM}original"] = value
            out[scale] = state_dict.get(scale, like[scale])
        else:
            out[key] = value
    return out
