"""``apply_san``: strip spectral norm, switch to circular padding and build :class:`SAN`, all undone by ``remove()``."""

from __future__ import annotations

from typing import Any, Union

from torch import nn

from .normalizer import _APPLIED, SAN, unwrap_model
from .padding import _ORIGINAL_MODE, PaddingRecord, switched_by_us, to_circular_padding_
from .spectral_norm import SpectralNormRecord, spectral_norm_style, strip_spectral_norm_
from .targets import Patterns, resolve, select_layers


def apply_san(
    module: nn.Module,
    targets: Patterns = None,
    *,
    exclude: Patterns = None,
    circular_padding: bool = True,
    strip_spectral_norm: bool = True,
    **san_kwargs: Any,
) -> SAN:
    """One call: strip spectral norm, switch the selected convs to circular padding, build :class:`SAN`.

    On any error the model is restored exactly and the error re-raised. ``san.remove()`` undoes all.
    Apply it to the bare critic *before* wrapping it in ``DistributedDataParallel`` (which caches the critic's
    buffers at construction): a DDP-wrapped critic whose spectral norm (``u``/``v`` buffers) would be stripped is
    refused.
    """
    inner = unwrap_model(module)
    matched = select_layers(inner, targets, exclude=exclude).matched  # fail early, before any change
    if strip_spectral_norm:
        refuse_after_ddp(module, [n for n, m in resolve(inner, matched) if spectral_norm_style(m) is not None])
    for name, layer in resolve(inner, matched):
        if layer in _APPLIED:
            raise RuntimeError(
                f"apply_san: layer {name!r} is already normalized by {_APPLIED[layer]!r}; call its .remove() first"
            )
    # Convs already switched by an earlier to_circular_padding_ keep that record; only the others are switched here.
    convs = [n for n, m in resolve(inner, matched) if isinstance(m, nn.modules.conv._ConvNd) and not switched_by_us(m)]
    records: list[Union[PaddingRecord, SpectralNormRecord]] = []
    # padding modes and markers as they are (a copy's stale markers included), put back exactly on error
    padding = [
        (m, m.padding_mode, m.__dict__.get(_ORIGINAL_MODE))
        for _, m in resolve(inner, matched)
        if hasattr(m, "padding_mode")
    ]
    try:
        if strip_spectral_norm:
            records.append(strip_spectral_norm_(inner, matched))
        if circular_padding and convs:
            records.append(to_circular_padding_(inner, convs))
        san = SAN(inner, matched, **san_kwargs)
    except BaseException:
        for record in reversed(records):
            record.restore()
        for conv, mode, marker in padding:
            conv.padding_mode = mode
            conv.__dict__.pop(_ORIGINAL_MODE, None)
            if marker is not None:
                conv.__dict__[_ORIGINAL_MODE] = marker
        raise
    san._records = records
    return san


def refuse_after_ddp(module: nn.Module, stripped: list[str]) -> None:
    """Refuse to strip spectral norm under an existing ``DistributedDataParallel``: DDP caches its buffer list at
    construction, and the removed ``u``/``v`` buffers break its next forward (an internal assert in its reducer)."""
    wrapped = isinstance(module, nn.parallel.DistributedDataParallel) or type(module).__name__.endswith(
        "DistributedDataParallel"
    )
    if wrapped and stripped:
        raise RuntimeError(
            f"apply_san: the critic is already wrapped in {type(module).__name__}, and stripping the spectral norm "
            f"of {stripped} removes buffers that DDP cached when it was built (its next forward would fail). "
            "Apply SAN before wrapping: san = apply_san(critic, ...); critic = DistributedDataParallel(critic)"
        )
