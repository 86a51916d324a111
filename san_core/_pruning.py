"""Exact pruning of ``max_{kernels, ω} Σ_groups |DFT|²`` (see :mod:`san_core._dft`): per-kernel upper bounds.

Two bounds on a kernel's power ``P(ω) = Σ_g |X_g(ω)|²`` over *any* grid:

* **L1**: ``P ≤ Σ_g ‖w_g‖₁²`` (triangle inequality), one matrix–vector product for all kernels.
* **Coarse grid** (a Bernstein-type sampling bound): ``P(θ) = Σ_g |Σ_t w_t e^{-iθ·t}|²`` is a trigonometric
  sum whose frequencies are tap differences ``t - t'`` within a group, so ``|t_d - t'_d| ≤ n_d`` with
  ``n_d`` the largest tap span in dimension ``d`` (``(k_d - 1)·dilation_d`` for one group). Sample it on
  a coarse grid ``θ_j = 2π j / M`` (``M_d`` points per dimension). Let ``θ*`` be a global maximum of
  ``P`` on the torus (``∇P(θ*) = 0``) and ``θ_j`` its nearest sample, ``u = θ_j - θ*``,
  ``|u_d| ≤ π / M_d``. ``f(s) = P(θ* + s·u)`` is an entire function of exponential type
  ``α = Σ_d |u_d| n_d ≤ π Σ_d n_d / M_d``, bounded on ℝ by ``P(θ*)``, so Bernstein's inequality
  (e.g. Boas, *Entire Functions*, 1954, Thm. 11.1.2; for trigonometric polynomials, Zygmund,
  *Trigonometric Series*, Ch. X, (3.13)) applied twice gives ``|f''| ≤ α² P(θ*)``; with ``f'(0) = 0``,
  Taylor gives ``P(θ*) - P(θ_j) ≤ ½ α² P(θ*)``, hence::

      max_ω P(ω) ≤ P(θ*) ≤ max_j P(θ_j) / (1 - α²/2)        (α² < 2).

  The bound holds for every grid (the fine grid's points are points of the torus, wrapped taps
  included: ``e^{-2πi ω t / N}`` is the same trigonometric sum evaluated at ``θ = 2πω/N``). We use
  ``min(L1, coarse)`` with a small margin for float rounding.

:func:`pruned_max_power` uses the bounds with data-dependent candidate sets (host syncs, the eager
path); :class:`StaticPlan` uses them with fixed sizes (``topk``, no sync) for the sync-free path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from . import _dft

#: α of each bound level, coarse to fine; a level is used only where its grid is much smaller than the full one.
LEVEL_ALPHAS = (1.0, 0.3)
#: A level (or pruning at all) must cost at most this fraction of the full evaluation to be used.
WORTH = 0.25
#: Fixed cost of one more pruning stage (~10 small ops), in (kernel × frequency) units of the cost model: launches
#: dominate on a GPU (~50 µs ≈ 5e6 units at ~1e13 flop/s), much less so on a CPU.
STAGE_OVERHEAD = {"cuda": 5e6, "cpu": 5e4}


def spans(groups: Sequence[_dft.TapGroup]) -> tuple[int, ...]:
    """``n_d``: the largest tap span per dimension within a group (the degree of ``X_g`` in ``θ_d``)."""
    return tuple(
        max(int(offs[:, d].max() - offs[:, d].min()) for _, offs in groups) for d in range(groups[0][1].shape[1])
    )


def bound_levels(groups: Sequence[_dft.TapGroup], grid: Sequence[int]) -> list[tuple[tuple[int, ...], float]]:
    """``[(coarse grid M, factor 1/(1 - α²/2))]`` for the levels of :data:`LEVEL_ALPHAS` that are worth it."""
    n = spans(groups)
    active = sum(1 for v in n if v > 0)
    full = math.prod(_dft.half_spectrum_shape(grid))
    levels = []
    for alpha in LEVEL_ALPHAS:
        coarse = tuple(1 if v == 0 else min(size, math.ceil(math.pi * v * active / alpha)) for v, size in zip(n, grid))
        real_alpha = math.pi * sum(v / m for v, m in zip(n, coarse))
        if real_alpha**2 >= 1.5 or math.prod(_dft.half_spectrum_shape(coarse)) > WORTH * full:
            continue
        levels.append((coarse, 1.0 / (1.0 - real_alpha**2 / 2)))
    return levels


def _margin(kernels: Tensor) -> float:
    """Relative slack for float rounding of a T-term sum (bounds must never fall below the exact value)."""
    return 8 * kernels.shape[1] * torch.finfo(kernels.dtype).eps


def indicator(groups: Sequence[_dft.TapGroup], num_taps: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(T, G)`` 0/1 matrix: tap ``t`` belongs to group ``g``."""
    ind = torch.zeros(num_taps, len(groups), dtype=dtype)
    for g, (idx, _) in enumerate(groups):
        ind[idx, g] = 1
    return ind.to(device)


def l1_bounds(kernels: Tensor, ind: Tensor) -> tuple[Tensor, Tensor]:
    """Per kernel ``Σ_g ‖w_g‖₁²`` (with rounding slack) and the exact ``P(0) = Σ_g (Σ w_g)²``: two matrix products."""
    upper = (kernels.abs() @ ind).square().sum(dim=1) * (1 + _margin(kernels))
    at_zero = (kernels @ ind).square().sum(dim=1)
    return upper, at_zero


def coarse_bounds(kernels: Tensor, groups: Sequence[_dft.TapGroup], level: tuple[tuple[int, ...], float]) -> Tensor:
    """Per kernel ``max_j P(θ_j) / (1 - α²/2)`` on the coarse grid, with rounding slack."""
    coarse, factor = level
    num_freqs = math.prod(_dft.half_spectrum_shape(coarse))
    power = _dft._block_power(kernels, groups, coarse, num_freqs)
    slack = _margin(kernels) * kernels.abs().sum(dim=1).square()
    return (power + slack) * factor


def pruned_max_power(
    kernels: Tensor,
    groups: Sequence[_dft.TapGroup],
    grid: Sequence[int],
    kernel_chunk: int,
    freq_chunk: int,
    stats: Optional[dict] = None,
) -> Tensor:
    """Exact ``max`` over kernels of the full-grid power, skipping kernels whose bound cannot beat it (host syncs)."""
    num_kernels = kernels.shape[0]
    upper, at_zero = l1_bounds(kernels, indicator(groups, kernels.shape[1], kernels.dtype, kernels.device))
    best = at_zero.amax()  # exact values at ω = 0: a lower bound on the result
    rows = torch.arange(num_kernels, device=kernels.device)
    evaluated = 0
    for level in bound_levels(groups, grid):
        keep = torch.nonzero(upper > best).flatten()
        rows, upper = rows[keep], upper[keep]
        if rows.numel() <= 1:
            break
        upper = torch.minimum(upper, coarse_bounds(kernels[rows], groups, level))
        # one exact value early, a strong lower bound for what follows; that kernel's bound becomes its value
        top = upper.argmax().reshape(1)
        value = _dft._block_power(kernels[rows[top]], groups, grid, freq_chunk)
        best = torch.maximum(best, value.amax())
        upper = upper.index_put((top,), value)
        evaluated += 1
    candidates = torch.nonzero(upper > best).flatten()
    order = rows[candidates[torch.argsort(upper[candidates], descending=True)]]
    sorted_upper = torch.sort(upper[candidates], descending=True).values
    # Small first blocks find a good running maximum early; later blocks grow to the planned size.
    block, done = min(kernel_chunk, 32), 0
    while True:
        remaining = int((sorted_upper[done:] > best).sum().item())  # sorted: candidates are a prefix
        if remaining == 0:
            break
        take = min(block, remaining)
        picked = order[done : done + take]
        best = torch.maximum(best, _dft._block_power(kernels[picked], groups, grid, freq_chunk).amax())
        done += take
        evaluated += take
        block = min(block * 2, kernel_chunk)
    if stats is not None:
        stats.update(evaluated=evaluated, total=num_kernels)
    return best


# ---------------------------------------------------------------------------------------- the static plan
@dataclass
class _Stage:
    """Evaluate ``P`` of ``count`` kernels (the top ones by the current bound) on ``grid``; ``factor`` 0: exact."""

    grid: tuple[int, ...]
    factor: float
    count: int
    mats: list[list[Tensor]] = field(default_factory=list)  # per frequency chunk, per group: E (T_g, 2F_c)
    kernel_chunk: int = 1


@dataclass
class StaticPlan:
    """Fixed-shape exact pruning: L1 bounds of all kernels, then each stage keeps the top ``count`` kernels by the
    current bound (``topk``), tightens their bound on a coarse grid, and the last stage evaluates its kernels exactly
    on the full grid. The result is ``max(exact max of the kept kernels, best bound left out)``: exact when the
    bound left out does not exceed it (``verified``), otherwise a certified upper bound (counted, never smaller).
    ``stages`` empty: every kernel evaluated on the full grid (no pruning)."""

    num_kernels: int
    perm: Optional[Tensor]  # taps grouped contiguously (device), or None for one group
    slices: list[tuple[int, int]]
    ind: Tensor
    stages: list[_Stage]
    full: _Stage

    def evaluated(self) -> int:
        return self.stages[-1].count if self.stages else self.num_kernels

    def max_power(self, kernels: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """``(max power, verified)`` as 0-d tensors (``verified`` ``None`` without pruning: always); no host sync,
        fixed shapes, few ops (this runs once per layer per step)."""
        if self.perm is not None:
            kernels = kernels.index_select(1, self.perm)
        if not self.stages:
            return _static_power(kernels, self.full, self.slices, per_kernel=False), None
        absolute = kernels.abs()
        l1 = absolute.sum(dim=1).square() if len(self.slices) == 1 else (absolute @ self.ind).square().sum(dim=1)
        upper, left_out = l1, None
        for stage in self.stages:
            if stage.count < upper.shape[0]:
                # the smallest kept bound also bounds every kernel dropped here (sorted): no (K+1)-th needed
                upper, pos = upper.topk(stage.count)
                dropped = upper[-1]
                left_out = dropped if left_out is None else torch.maximum(left_out, dropped)
                kernels = kernels.index_select(0, pos)
                if stage.factor:
                    l1 = l1.index_select(0, pos)
            if stage.factor:  # coarse bound, with float-rounding slack ∝ the L1 bound
                coarse = _static_power(kernels, stage, self.slices, per_kernel=True)
                upper = torch.minimum(upper, coarse.add(l1, alpha=_margin(kernels)).mul(stage.factor))
        power = _static_power(kernels, self.full, self.slices, per_kernel=False)
        if left_out is None:
            return power, None
        bound = left_out * (1 + _margin(kernels))  # the L1 bounds' own rounding
        return torch.maximum(power, bound), bound <= power


def _static_power(kernels: Tensor, stage: _Stage, slices: list[tuple[int, int]], *, per_kernel: bool) -> Tensor:
    """``max`` over ``stage.grid`` of ``Σ_g |DFT|²``: per kernel, or over all kernels (0-d); fixed-size chunks."""
    out = []
    single = len(slices) == 1
    for i in range(0, kernels.shape[0], stage.kernel_chunk):
        block = kernels if stage.kernel_chunk >= kernels.shape[0] else kernels[i : i + stage.kernel_chunk]
        best: Optional[Tensor] = None
        for mats in stage.mats:
            acc: Optional[Tensor] = None
            for (a, b), mat in zip(slices, mats):
                prod = (block if single else block[:, a:b]) @ mat  # [Re | Im] of the DFT
                power = prod.square().view(prod.shape[0], 2, -1).sum(dim=1)
                acc = power if acc is None else acc + power
            assert acc is not None
            peak = acc.amax(dim=1) if per_kernel else acc.amax()
            best = peak if best is None else torch.maximum(best, peak)
        assert best is not None
        out.append(best)
    if per_kernel:
        return out[0] if len(out) == 1 else torch.cat(out)
    return out[0] if len(out) == 1 else torch.stack(out).amax()


def _make_stage(
    grid: tuple[int, ...], factor: float, count: int, groups_perm: Sequence[_dft.TapGroup], kernels: Tensor, mem: int
) -> _Stage:
    num_freqs = math.prod(_dft.half_spectrum_shape(grid))
    kernel_chunk, freq_chunk = _dft._plan(count, kernels.shape[1], num_freqs, kernels.element_size(), mem)
    mats = [
        [
            _dft.phase_matrix(offs, grid, start, min(start + freq_chunk, num_freqs), kernels.dtype, kernels.device)
            for _, offs in groups_perm
        ]
        for start in range(0, num_freqs, freq_chunk)
    ]
    return _Stage(tuple(grid), factor, count, mats, kernel_chunk)


def build_plan(
    kernels: Tensor,
    groups: Sequence[_dft.TapGroup],
    grid: Sequence[int],
    exact: Tensor,
    max_memory: int,
    *,
    prune: bool = True,
) -> StaticPlan:
    """Choose the stage sizes from one exact evaluation (``exact``: the max power of these kernels; host syncs).

    Each stage keeps ``1.25 × (kernels whose bound reaches the result) + 8`` kernels; the cheapest of the
    level subsets wins (each stage also costs :data:`STAGE_OVERHEAD`), and no pruning at all when even that costs
    over :data:`WORTH` of the full evaluation (or with ``prune=False``).
    """
    num_kernels, num_taps = kernels.shape
    order = torch.cat([idx for idx, _ in groups])
    perm = None if len(groups) == 1 else order.to(kernels.device)
    sizes = [int(idx.numel()) for idx, _ in groups]
    slices = [(sum(sizes[:g]), sum(sizes[: g + 1])) for g in range(len(groups))]
    groups = [(torch.arange(a, b), offs) for (a, b), (_, offs) in zip(slices, groups)]  # in the grouped tap order
    ind = indicator(groups, num_taps, kernels.dtype, kernels.device)
    grouped = kernels if perm is None else kernels.index_select(1, perm)
    full_freqs = math.prod(_dft.half_spectrum_shape(grid))
    threshold = float(exact) * (1 - 1e-6)
    levels = bound_levels(groups, grid)
    overhead = STAGE_OVERHEAD.get(kernels.device.type, STAGE_OVERHEAD["cpu"])
    best_cost, best_counts, best_levels = float(num_kernels * full_freqs) * WORTH + overhead, None, None
    for subset in ([], levels[:1], levels[1:], levels) if prune else ():
        upper, _ = l1_bounds(grouped, ind)
        counts, cost, rows = [], overhead * (2 + len(subset)), grouped
        for coarse, factor in subset:
            need = int((upper >= threshold).sum())
            count = min(upper.shape[0], math.ceil(1.25 * need) + 8)
            pos = upper.topk(count).indices
            rows, upper = rows.index_select(0, pos), upper.index_select(0, pos)
            upper = torch.minimum(upper, coarse_bounds(rows, groups, (coarse, factor)))
            counts.append(count)
            cost += count * math.prod(_dft.half_spectrum_shape(coarse))
        final = min(upper.shape[0], math.ceil(1.25 * int((upper >= threshold).sum())) + 8)
        cost += final * full_freqs
        if cost < best_cost:
            best_cost, best_counts, best_levels = cost, [*counts, final], subset
    full = _make_stage(tuple(grid), 0.0, num_kernels, groups, kernels, max_memory)
    if best_counts is None or best_levels is None:
        return StaticPlan(num_kernels, perm, slices, ind, [], full)
    stages = [_make_stage(c, f, n, groups, kernels, max_memory) for (c, f), n in zip(best_levels, best_counts)]
    stages.append(_Stage(tuple(grid), 0.0, best_counts[-1]))
    full = _make_stage(tuple(grid), 0.0, best_counts[-1], groups, kernels, max_memory)
    return StaticPlan(num_kernels, perm, slices, ind, stages, full)
