"""Switching convs to circular padding (Lemma 1 is exact under it), with an exact inverse."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from torch import nn

from .targets import Patterns, select_layers

_ORIGINAL_MODE = "_san_original_padding_mode"


class _Switched:
    """Marker of a conv :func:`to_circular_padding_` switched: its original mode and a weak reference to that conv.
    A deep copy (or an unpickled model) carries a marker of another conv: stale, its mode is still the original."""

    def __init__(self, mode: str, conv: nn.Module | None = None) -> None:
        self.mode = mode
        self._conv = weakref.ref(conv) if conv is not None else None

    def owns(self, conv: nn.Module) -> bool:
        return self._conv is not None and self._conv() is conv

    def __reduce__(self) -> tuple:  # copies and pickles drop the reference: a copy's marker is stale
        return (_Switched, (self.mode,))


def switched_by_us(conv: nn.Module) -> bool:
    """Did :func:`to_circular_padding_` switch this conv (and no ``restore()`` has run since)? A copy of such a conv
    was not switched by a record of its own (see :func:`to_circular_padding_`)."""
    marker = conv.__dict__.get(_ORIGINAL_MODE)
    return isinstance(marker, _Switched) and marker.owns(conv)


@dataclass
class PaddingRecord:
    """What :func:`to_circular_padding_` changed: ``{layer name: original padding_mode}``.

    ``skipped`` lists selected layers left alone, with the reason (transposed convs: PyTorch
    supports only zero padding there).
    """

    module: nn.Module
    changed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def restore(self) -> list[str]:
        """Put every changed conv back to its original padding mode; returns their names."""
        named = dict(self.module.named_modules())
        for name, mode in self.changed.items():
            conv = named[name]
            conv.padding_mode = mode
            conv.__dict__.pop(_ORIGINAL_MODE, None)
        restored, self.changed = list(self.changed), {}
        return restored


def to_circular_padding_(module: nn.Module, targets: Patterns = None, *, exclude: Patterns = None) -> PaddingRecord:
    """Set ``padding_mode="circular"`` in place on the selected convs (same Parameters, same padding amount).

    Convs already circular are left as they are and not recorded, except a copy (``copy.deepcopy``, pickling) of a
    conv this function switched: it is recorded with the original's mode, so ``restore()`` undoes the copy too.
    Refuses a conv that this function already switched (undo with ``record.restore()`` first).
    """
    selection = select_layers(
        module, targets, exclude=exclude, types=(nn.modules.conv._ConvNd,), what="to_circular_padding_"
    )
    named = dict(module.named_modules())
    twice = [n for n in selection.matched if switched_by_us(named[n])]
    if twice:
        raise RuntimeError(
            f"to_circular_padding_: already applied to {twice}; call record.restore() before applying again"
        )
    record = PaddingRecord(module)
    for name in selection.matched:
        conv = named[name]
        if isinstance(conv, nn.modules.conv._ConvTransposeNd):
            record.skipped[name] = "transposed conv: PyTorch supports only padding_mode='zeros'"
        else:
            marker = conv.__dict__.get(_ORIGINAL_MODE)
            copied = marker.mode if isinstance(marker, _Switched) else None  # not ours: switched_by_us is False
            if conv.padding_mode != "circular" or copied is not None:
                original = copied if copied is not None else conv.padding_mode
                record.changed[name] = original
                conv.__dict__[_ORIGINAL_MODE] = _Switched(original, conv)
                conv.padding_mode = "circular"
    return record
