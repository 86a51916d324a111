"""The batched per-layer tail of a sync-free step: per-device constants built with the plans (:class:`Tail`) and
:func:`combine`, which turns every layer's ``(amp, lo)`` into its constant ``g·g_l·max(amp, lo·inflate)`` with
``stack``/``maximum`` ops for all layers at once (tied layers share the largest), plus the ``lo·inflate > amp``
flags of unverified pruning. The finite checks of the result are :func:`san_core._guard.guard`'s."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

#: One layer's ``(amp, lo)``: its constant is ``max(amp, lo · inflate)`` (``lo`` ``None``: the constant is ``amp``).
Pieces = tuple[Tensor, Optional[Tensor]]


@dataclass
class Tail:
    """Per-device constants of the batched tail of a sync-free step (built when the plans are)."""

    zero: Tensor
    one: Tensor
    inflate: Tensor  # per layer (1 where lo is an explicit bound or absent: then lo is 0)
    factor: Optional[Tensor]  # g·g_l per layer; None when all are 1
    tied: list[Tensor]  # index groups of layers sharing one weight (divided once, by the largest constant)


def build_tail(
    device: torch.device, dtypes: list[torch.dtype], inflate: list[float], factors: list[float], weight_ids: list[int]
) -> Tail:
    """The :class:`Tail` of one device's layers: ``inflate`` and ``factors`` (g·g_l) per layer, in the promoted
    dtype of their constants; layers with the same ``weight_ids`` entry form one tied group."""
    dtype = functools.reduce(torch.promote_types, dtypes)  # of the stacked constants
    by_weight: dict[int, list[int]] = {}
    for i, key in enumerate(weight_ids):
        by_weight.setdefault(key, []).append(i)
    return Tail(
        torch.zeros((), dtype=dtype, device=device), torch.ones((), dtype=dtype, device=device),
        torch.tensor(inflate, dtype=dtype, device=device),
        None if all(f == 1 for f in factors) else torch.tensor(factors, dtype=dtype, device=device),
        [torch.tensor(ix, device=device) for ix in by_weight.values() if len(ix) > 1],
    )  # fmt: skip


def combine(tail: Tail, pieces: list[Pieces]) -> tuple[Tensor, Tensor]:
    """``(constants, unverified)`` of all layers of a device: ``stack``, ``split``, ``mul``, ``maximum``, ``gt``."""
    amps, los = torch.stack([amp for amp, _ in pieces] + [tail.zero if lo is None else lo for _, lo in pieces]).split(
        len(pieces)
    )
    bounds = los * tail.inflate
    constants = torch.maximum(amps, bounds)  # NaN propagates
    if tail.factor is not None:
        constants = constants * tail.factor
    for group in tail.tied:
        constants = constants.index_put((group,), constants.index_select(0, group).amax().expand(len(group)))
    return constants, bounds > amps  # a NaN amp counts as a bad constant instead
