"""Finite checks: cheap eager ones (one reduction a weight, one host sync for all); for the sync-free path, the
on-device guard of a step (finite checks of weights and constants, the guarded divisors) and device-side flags
read at the next cheap sync point (:meth:`SAN.check`, ``state_dict()``, ``describe()``). The batched constants it
guards come from :mod:`san_core._tail`."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ._tail import Tail

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
    def record(counter: Tensor, bad_weight: Tensor, bad_constant: Tensor, unverified: Tensor) -> None:
        """Add one step's ``(layers,)`` bool flags (no sync; two ops)."""
        counter.add_(torch.stack([bad_weight, bad_constant, unverified], dim=1))

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


def guard(
    tail: Tail, weights: list[Tensor], constants: Tensor, unverified: Tensor, counter: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """``(bad, safe divisors)``: a layer is bad when its weight or constant is not finite (its divisor is then 1);
    the flags are added to ``counter``. A tensor is finite iff ``‖0·w‖₂ = 0`` (``0·(±inf) = NaN``; no overflow
    possible, unlike ``‖w‖``): one foreach product and one foreach norm for all weights. (``max|w|`` through
    ``_foreach_norm(w, inf)`` would skip the temporary ``0·w``, but whether a max reduction propagates NaN has
    varied across torch versions and devices; sums always propagate it.)"""
    bad_weight = torch.stack(torch._foreach_norm(torch._foreach_mul(weights, 0), 2)).ne(0)
    bad_constant = constants.mul(0).ne(0)
    bad = bad_weight | bad_constant
    DeviceFlags.record(counter, bad_weight, bad_constant, unverified)
    return bad, torch.where(bad, tail.one, constants.clamp_min(eps))
