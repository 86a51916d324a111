"""Finite checks: cheap eager ones (one reduction a weight, one host sync for all) and device-side flags for the
sync-free path, read at the next cheap sync point (:meth:`SAN.check`, ``state_dict()``, ``describe()``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

#: Columns of a layer's flag counters.
BAD_WEIGHT, BAD_CONSTANT, UNVERIFIED = 0, 1, 2


def finite(tensor: Tensor) -> Tensor:
    """0-d bool: no NaN/Inf in ``tensor`` (``aminmax`` propagates NaN; no boolean temporary of the tensor's size)."""
    low, high = torch.aminmax(tensor.detach())
    return torch.isfinite(low) & torch.isfinite(high)


def non_finite(named: Mapping[str, Tensor]) -> list[str]:
    """Names whose tensor has NaN/Inf: one host sync for all of them."""
    if not named:
        return []
    flags = [finite(t) for t in named.values()]
    host = torch.stack([f.cpu() for f in flags]) if len({f.device for f in flags}) > 1 else torch.stack(flags).cpu()
    return [n for n, ok in zip(named, host.tolist()) if not ok]


class DeviceFlags:
    """Per-layer ``int64`` counters ``[bad weight, bad constant, unverified pruning]`` kept on the layer's device."""

    def __init__(self) -> None:
        self.counters: dict[str, Tensor] = {}
        self.unverified: dict[str, int] = {}  # host totals of pruning fallbacks, updated at each read

    def ensure(self, name: str, device: torch.device) -> Tensor:
        counter = self.counters.get(name)
        if counter is None or counter.device != device:
            counter = self.counters[name] = torch.zeros(3, dtype=torch.int64, device=device)
        return counter

    @staticmethod
    def record(counter: Tensor, ok_weight: Tensor, ok_constant: Tensor, verified: Tensor) -> None:
        counter.add_(torch.stack([~ok_weight, ~ok_constant, ~verified]).to(torch.int64))

    def read(self, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """One sync: the layers that had a non-finite weight / constant since the last read; resets the counters."""
        names = [n for n in names if n in self.counters]
        if not names:
            return [], []
        values = torch.stack([self.counters[n].cpu() for n in names]).tolist()
        for name in names:
            self.counters[name].zero_()
        for name, row in zip(names, values):
            self.unverified[name] = self.unverified.get(name, 0) + row[UNVERIFIED]
        bad_weight = [n for n, r in zip(names, values) if r[BAD_WEIGHT]]
        return bad_weight, [n for n, r in zip(names, values) if r[BAD_CONSTANT]]
