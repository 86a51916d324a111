"""Fixed-shape exact pruning for the sync-free path (:class:`StaticPlan`), in the amplitude domain.

The bounds of :mod:`san_core._pruning`, taken as square roots: a kernel's peak amplitude ``A = max_ω √P(ω)`` on the
full grid satisfies ``A ≤ ‖w‖₁`` (one group; several: ``√Σ_g ‖w_g‖₁²``) and ``A ≤ f'·max_j √P(θ_j)`` on a coarse
grid, ``f' = 1/√(1 - α²/2)`` (the Bernstein-type bound of :mod:`san_core._pruning`). A coarse stage's phase matrices
carry ``f'``, so one ``mm``, ``hypot`` and ``amax`` give every kept kernel's bound.

One step: the L1 bounds of all kernels (``abs`` and one matrix–vector product); each stage keeps the top ``count``
kernels by the current bound (``topk``, sorted: the last kept value ``lo`` bounds every kernel dropped there) and
tightens the kept bounds on its coarse grid, clamped to ``[lo, previous bound]``. Raising a kept bound to ``lo``
keeps it a bound and makes every stage's ``lo`` at least the previous one's, so the last ``lo`` bounds every kernel
dropped at any stage. The last stage evaluates its kernels exactly on the full grid: ``amp``.

Float rounding (a relative slack: no per-layer ``max ‖w‖₁`` is needed). Let ``m = 8 T ε``
(:func:`san_core._pruning._margin`, ``T`` taps). The computed L1 ``L_i`` has ``‖w_i‖₁ ≤ L_i (1 + m)`` (a ``T``-term
sum of non-negative terms). A coarse maximum computed with the exact phase matrix, ``Ĉ_i``, differs from the true
``C_i = max_j |X_i(θ_j)|`` by at most ``(√2 (T + 1) + 1) ε ‖w_i‖₁ ≤ m ‖w_i‖₁`` (the real and imaginary parts are
``T``-term products with rounded entries ``|E| ≤ 1``; then ``hypot``). On a coarse grid with more points than the
tap span in every dimension (checked; else the level is not used) the taps are distinct modulo the grid, so by
Parseval ``C_i² ≥ mean_j |X_i(θ_j)|² = ‖w_i‖₂² ≥ ‖w_i‖₁² / T`` (summed over the groups when there are several).
Hence ``C_i ≤ Ĉ_i + m √T C_i``, i.e. ``C_i ≤ Ĉ_i / (1 - m √T)``: folded with ``f'`` into the stage's phase
matrices as ``scale = f' / (1 - 2 m √T)`` (the extra ``m`` covers the rounding of the scaled entries). So a kernel
dropped at any stage, its computed bound ``≤ lo``, has ``A_i ≤ lo (1 + m)``; the step uses
``bound = lo · (1 + 2 m)`` (:attr:`StaticPlan.inflate`, covering the product's rounding too). The constant is
``max(amp, bound)``: exact when ``bound ≤ amp`` (verified), otherwise a certified upper bound (counted; the layer
is re-planned).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from . import _dft
from ._pruning import STAGE_OVERHEAD, WORTH, _margin, bound_levels, indicator, spans

#: A plan keeps ``KEEP_FACTOR ×`` (kernels whose inflated bound reaches the result) ``+ KEEP_EXTRA``.
KEEP_FACTOR, KEEP_EXTRA = 1.25, 8


@dataclass
class _Stage:
    """Keep the top ``count`` kernels by the current bound; then (``mats`` non-empty) evaluate their peak amplitude
    on ``grid``. ``mats``: per frequency chunk, per group, ``scale · [cos | sin]`` (``T_g × 2F_c``)."""

    count: int
    grid: tuple[int, ...] = ()
    mats: list[list[Tensor]] = field(default_factory=list)
    kernel_chunk: int = 1
    scale: float = 1.0


@dataclass
class StaticPlan:
    """Fixed-shape exact pruning (see the module docstring); ``stages`` empty: no pruning (every kernel on the full
    grid). ``inflate`` is ``1 + 2m`` of ``bound = lo · inflate`` (see the module docstring)."""

    num_kernels: int
    perm: Optional[Tensor]  # taps grouped contiguously (device), or None for one group
    slices: list[tuple[int, int]]
    ones: Tensor  # (T,) ones for one group, the (T, G) group indicator otherwise
    stages: list[_Stage]  # coarse stages, then the final selection
    full: _Stage
    inflate: float = 1.0

    def evaluated(self) -> int:
        return self.stages[-1].count if self.stages else self.num_kernels

    def max_amplitude(self, kernels: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """``(amp, lo)`` as 0-d tensors (``lo`` ``None`` when no kernel was dropped): the constant is
        ``max(amp, lo · inflate)``. No host sync, fixed shapes, few ops (once per layer per step)."""
        if self.perm is not None:
            kernels = kernels.index_select(1, self.perm)
        if not self.stages:
            return _amplitude(kernels, self.full, self.slices, per_kernel=False), None
        upper = _l1(kernels, self.ones)
        lo: Optional[Tensor] = None
        for stage in self.stages:
            if stage.count < upper.shape[0]:
                upper, pos = upper.topk(stage.count)  # sorted, descending
                lo = upper[-1]
                kernels = kernels.index_select(0, pos)
            if stage.mats:
                upper = _tighten(_amplitude(kernels, stage, self.slices, per_kernel=True), lo, upper)
        return _amplitude(kernels, self.full, self.slices, per_kernel=False), lo


def _l1(kernels: Tensor, ones: Tensor) -> Tensor:
    """Per kernel ``‖w‖₁`` (one group) or ``√Σ_g ‖w_g‖₁²``."""
    if ones.dim() == 1:
        return kernels.abs() @ ones
    return (kernels.abs() @ ones).square().sum(dim=1).sqrt()


def _tighten(coarse: Tensor, lo: Optional[Tensor], upper: Tensor) -> Tensor:
    return torch.minimum(coarse, upper) if lo is None else torch.clamp(coarse, min=lo, max=upper)


def _amplitude(kernels: Tensor, stage: _Stage, slices: list[tuple[int, int]], *, per_kernel: bool) -> Tensor:
    """``scale · max`` over ``stage.grid`` of ``√Σ_g |DFT_g|²``: per kernel, or over all kernels (0-d)."""
    out = []
    single = len(slices) == 1
    for i in range(0, kernels.shape[0], stage.kernel_chunk):
        block = kernels if stage.kernel_chunk >= kernels.shape[0] else kernels[i : i + stage.kernel_chunk]
        best: Optional[Tensor] = None
        for mats in stage.mats:
            amp: Optional[Tensor] = None
            for (a, b), mat in zip(slices, mats):
                re, im = ((block if single else block[:, a:b]) @ mat).chunk(2, dim=1)  # [Re | Im] of the DFT
                group = torch.hypot(re, im)
                amp = group if amp is None else torch.hypot(amp, group)
            assert amp is not None
            peak = amp.amax(dim=1) if per_kernel else amp.amax()
            best = peak if best is None else torch.maximum(best, peak)
        assert best is not None
        out.append(best)
    if per_kernel:
        return out[0] if len(out) == 1 else torch.cat(out)
    return out[0] if len(out) == 1 else torch.stack(out).amax()


def _make_stage(
    grid: tuple[int, ...], scale: float, count: int, groups: Sequence[_dft.TapGroup], kernels: Tensor, mem: int
) -> _Stage:
    num_freqs = math.prod(_dft.half_spectrum_shape(grid))
    kernel_chunk, freq_chunk = _dft._plan(count, kernels.shape[1], num_freqs, kernels.element_size(), mem)
    mats = []
    for start in range(0, num_freqs, freq_chunk):
        stop = min(start + freq_chunk, num_freqs)
        chunk = [_dft.phase_matrix(offs, grid, start, stop, kernels.dtype, kernels.device) for _, offs in groups]
        mats.append(chunk if scale == 1 else [m * scale for m in chunk])
    return _Stage(count, tuple(grid), mats, kernel_chunk, scale)


def stage_levels(
    groups: Sequence[_dft.TapGroup], grid: Sequence[int], kernels: Tensor
) -> list[tuple[tuple[int, ...], float]]:
    """``[(coarse grid, scale)]``: the levels of :func:`~san_core._pruning.bound_levels` whose grid has more points
    than the tap span in every dimension (Parseval applies; implied by ``α² < 1.5``, kept as a check), with
    ``scale = f' / (1 - 2 m √T)``."""
    relative = 2 * _margin(kernels) * math.sqrt(kernels.shape[1])  # the coarse values' rounding, relative
    span = spans(groups)
    return [
        (coarse, math.sqrt(factor) / (1 - relative))  # f' = √(1/(1 - α²/2))
        for coarse, factor in bound_levels(groups, grid)
        if relative < 0.5 and all(m > n for m, n in zip(coarse, span) if n > 0)
    ]


def _chunks(count: int, num_taps: int, num_freqs: int, kernels: Tensor, mem: int) -> int:
    """Blocks (each a few more ops) an evaluation of ``count`` kernels on ``num_freqs`` frequencies runs in."""
    kernel_chunk, freq_chunk = _dft._plan(count, num_taps, num_freqs, kernels.element_size(), mem)
    return math.ceil(count / kernel_chunk) * math.ceil(num_freqs / freq_chunk)


def _keep(upper: Tensor, cut: float) -> int:
    return min(upper.shape[0], math.ceil(KEEP_FACTOR * int((upper >= cut).sum())) + KEEP_EXTRA)


def build_plan(
    kernels: Tensor,
    groups: Sequence[_dft.TapGroup],
    grid: Sequence[int],
    exact: Tensor,
    max_memory: int,
    *,
    prune: bool = True,
) -> StaticPlan:
    """Choose the stage sizes from one exact evaluation (``exact``: the max *power* of these kernels; host syncs),
    running the step's own bounds on these kernels: each stage keeps ``1.25 ×`` (kernels whose bound reaches the
    result once inflated) ``+ 8``; the cheapest subset of the coarse levels wins (each stage, and each further
    memory-bounded block of an evaluation, also costs :data:`~san_core._pruning.STAGE_OVERHEAD`: a block is a few more
    ops, kernel launches on a GPU), and no pruning when even that costs over
    :data:`~san_core._pruning.WORTH` of the full evaluation (or with ``prune=False``)."""
    num_kernels, num_taps = kernels.shape
    perm = None if len(groups) == 1 else torch.cat([idx for idx, _ in groups]).to(kernels.device)
    sizes = [int(idx.numel()) for idx, _ in groups]
    slices = [(sum(sizes[:g]), sum(sizes[: g + 1])) for g in range(len(groups))]
    groups = [(torch.arange(a, b), offs) for (a, b), (_, offs) in zip(slices, groups)]  # in the grouped tap order
    ind = indicator(groups, num_taps, kernels.dtype, kernels.device)
    ones = ind[:, 0].contiguous() if len(groups) == 1 else ind
    grouped = kernels if perm is None else kernels.index_select(1, perm)
    full_freqs = math.prod(_dft.half_spectrum_shape(grid))
    unpruned = StaticPlan(
        num_kernels, perm, slices, ones, [], _make_stage(tuple(grid), 1.0, num_kernels, groups, grouped, max_memory)
    )
    if not prune:
        return unpruned
    margin = _margin(grouped)
    inflate = 1 + 2 * margin
    cut = math.sqrt(float(exact)) * (1 - 1e-6) / inflate
    overhead = STAGE_OVERHEAD.get(kernels.device.type, STAGE_OVERHEAD["cpu"])
    l1 = _l1(grouped, ones)
    full_chunks = _chunks(num_kernels, num_taps, full_freqs, grouped, max_memory)
    best_cost, best = WORTH * num_kernels * full_freqs + overhead * full_chunks, None
    levels = stage_levels(groups, grid, grouped)
    for subset in ([], levels[:1], levels[1:], levels):
        upper, rows, lo = l1, grouped, None
        stages, cost = [], overhead * (2 + len(subset))
        for coarse, scale in subset:
            count = _keep(upper, cut)
            if count < upper.shape[0]:
                upper, pos = upper.topk(count)
                lo, rows = upper[-1], rows.index_select(0, pos)
            stage = _make_stage(coarse, scale, count, groups, grouped, max_memory)
            upper = _tighten(_amplitude(rows, stage, slices, per_kernel=True), lo, upper)
            stages.append(stage)
            freqs = math.prod(_dft.half_spectrum_shape(coarse))
            cost += count * freqs + overhead * (_chunks(count, num_taps, freqs, grouped, max_memory) - 1)
        final = _keep(upper, cut)
        if min([s.count for s in stages] + [final]) >= num_kernels:
            continue  # nothing dropped: not pruning
        cost += final * full_freqs + overhead * (_chunks(final, num_taps, full_freqs, grouped, max_memory) - 1)
        if cost < best_cost:
            best_cost, best = cost, (stages, final)
    if best is None:
        return unpruned
    stages, final = best
    full = _make_stage(tuple(grid), 1.0, final, groups, grouped, max_memory)
    return StaticPlan(num_kernels, perm, slices, ones, [*stages, _Stage(final)], full, inflate)
