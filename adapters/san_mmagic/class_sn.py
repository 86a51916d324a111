"""Removing mmagic's class-style ("ajbrock") spectral norm in place, with an exact inverse.

mmagic's ``SNConv2d``/``SNLinear``/``SNEmbedding`` (``biggan_snmodule.py``, used by ``SNConvModule`` with
``sn_style='ajbrock'`` and by BigGAN/SNGAN heads) subclass ``nn.Conv2d``/``nn.Linear``/``nn.Embedding``
and a ``SpectralNorm`` mixin: the weight stays a plain Parameter, ``forward`` divides it by ``σ₁``
estimated with buffers ``u{i}``/``sv{i}``. san_core handles torch's spectral norm only, so this
module does the class-style one: the layer's class becomes its torch base class (whose ``forward``
also honours ``padding_mode``, which ``SNConv2d.forward`` ignores), the ``u``/``sv`` buffers and the
mixin's attributes are set aside, and :meth:`ClassSpectralNormRecord.restore` puts all of it back.
The weight Parameter object is untouched, so optimizers keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from torch import Tensor, nn

__all__ = ["ClassSpectralNormRecord", "class_spectral_norm_base", "strip_class_spectral_norm_"]

_PLAIN_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding)
_MIXIN_ATTRS = ("num_svs", "num_iters", "num_outputs", "transpose", "eps")


def class_spectral_norm_base(layer: nn.Module) -> Optional[type[nn.Module]]:
    """The torch class under a class-style SN layer (``SNConv2d`` -> ``nn.Conv2d``), else None.

    Recognized by behaviour, not by name: a subclass of a plain layer type with an ``sn_weight``
    method and ``u0`` buffer (mmagic's and BigGAN-PyTorch's layout).
    """
    cls = type(layer)
    if cls in _PLAIN_TYPES or not callable(getattr(cls, "sn_weight", None)) or "u0" not in layer._buffers:
        return None
    for base in cls.__mro__[1:]:
        if base in _PLAIN_TYPES:
            return base
    return None


@dataclass
class _Saved:
    cls: type
    buffers: dict[str, Optional[Tensor]]
    attrs: dict[str, Any]


@dataclass
class ClassSpectralNormRecord:
    """What :func:`strip_class_spectral_norm_` removed, per layer name; ``restore()`` undoes it exactly."""

    module: nn.Module
    removed: dict[str, _Saved] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.removed)

    def restore(self) -> list[str]:
        """Give every stripped layer back its SN class, buffers (same tensors) and attributes."""
        named = dict(self.module.named_modules())
        for name, saved in self.removed.items():
            layer = named[name]
            layer.__class__ = saved.cls
            layer._buffers.update(saved.buffers)
            layer.__dict__.update(saved.attrs)
        restored, self.removed = list(self.removed), {}
        return restored


def strip_class_spectral_norm_(module: nn.Module, names: Iterable[str]) -> ClassSpectralNormRecord:
    """Turn the named class-style SN layers into their plain torch class, in place.

    Names that are not class-style SN layers are ignored; unknown names raise ``ValueError``
    before anything changes.
    """
    named: Mapping[str, nn.Module] = dict(module.named_modules())
    names = list(names)
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"strip_class_spectral_norm_: no layers named {unknown} in {type(module).__name__}")
    record = ClassSpectralNormRecord(module)
    for name in names:
        layer = named[name]
        base = class_spectral_norm_base(layer)
        if base is None:
            continue
        keys = [k for k in layer._buffers if (k[:1] == "u" and k[1:].isdigit()) or (k[:2] == "sv" and k[2:].isdigit())]
        saved = _Saved(
            cls=type(layer),
            buffers={k: layer._buffers.pop(k) for k in keys},
            attrs={a: layer.__dict__.pop(a) for a in _MIXIN_ATTRS if a in layer.__dict__},
        )
        layer.__class__ = base
        record.removed[name] = saved
    return record
