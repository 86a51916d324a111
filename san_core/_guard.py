"""Finite checks: cheap eager ones (one reduction a weight, one host sync for all) and device-side flags for the
sync-free path, read at the next cheap sync point (:meth:`SAN.check`, ``state_dict()``, ``describe()``)."""

from __future__ import annotations

from collections.abc import Mapping

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
    """``int64`` counters ``[bad weight, bad constant, unverified pruning]`` per layer, one ``(layers, 3)`` tensor per
    device (updated by one in-place add per step), read and reset by :meth:`read_all` (one sync per device)."""

    def __init__(self) -> None:
        self.groups: dict[torch.device, tuple[list[str], Tensor]] = {}
        self.unverified: dict[str, int] = {}  # host totals of pruning fallbacks, updated at each read
        self.pending: tuple[list[str], list[str]] = ([], [])  # read but not reported yet (a layout change)

    def ensure(self, device: torch.device, names: list[str]) -> Tensor:
        """The counter of ``names`` on ``device`` (pending counts of a previous layout are read first)."""
        group = self.groups.get(device)
        if group is None or group[0] != names:
            bad_weight, bad_constant = self.read_all()
            self.pending = (self.pending[0] + bad_weight, self.pending[1] + bad_constant)
            group = self.groups[device] = (list(names), torch.zeros(len(names), 3, dtype=torch.int64, device=device))
        return group[1]

    @staticmethod
    def record(counter: Tensor, ok_weight: Tensor, ok_constant: Tensor, verified: Tensor) -> None:
        """Add one step's ``(layers,)`` flags (no sync)."""
        counter.add_(torch.stack([~ok_weight, ~ok_constant, ~verified], dim=1).to(torch.int64))

    def read_all(self) -> tuple[list[str], list[str]]:
        """Layers that had a non-finite weight / constant since the last read; resets the counters."""
        bad_weight, bad_constant = self.pending
        self.pending = ([], [])
        for names, counter in self.groups.values():
            rows = counter.cpu().tolist()
            counter.zero_()
            for name, row in zip(names, rows):
                self.unverified[name] = self.unverified.get(name, 0) + row[UNVERIFIED]
                if row[BAD_WEIGHT]:
                    bad_weight.append(name)
                if row[BAD_CONSTANT]:
                    bad_constant.append(name)
        return bad_weight, bad_constant
