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

Float rounding. With ``m = 8 T ε`` (:func:`san_core._pruning._margin`, ``T`` taps): the computed L1 ``L_i`` has
``‖w_i‖₁ ≤ L_i (1 + m)`` (a ``T``-term sum of non-negative terms, error ≤ ``T ε L_i``); a coarse value ``C_i``,
computed from phase entries ``|E| ≤ f'`` (each rounded, relative ``ε``), has ``f' A_c,i ≤ C_i + m f' ‖w_i‖₁``: each
of the real and imaginary parts carries an error ≤ ``(T + 1) ε f' ‖w_i‖₁``, ``hypot`` at most ``√2`` times that plus
``ε`` relative, and ``(√2 (T + 1) + 1) ε ≤ 8 T ε``. A kernel dropped at any stage has a computed bound ``≤ lo``
and, being the minimum of its L1 and coarse bounds (or raised), ``A_i ≤ lo + (m f' (1 + m) + m) L_max``, with
``L_max`` the largest computed L1 (the first ``topk``'s first value). The step uses ``bound = lo + c·L_max`` with
``c = 2 m (1 + f'_max)``, which also covers the rounding of that sum (≤ ``3 ε L_max``); with no coarse stage every
bound is an L1 one and ``L_max`` is taken as ``lo`` itself. The constant is ``max(amp, bound)``: exact when
``bound ≤ amp`` (verified), otherwise a certified upper bound (counted; the layer is re-planned).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from . import _dft
from ._pruning import STAGE_OVERHEAD, WORTH, _margin, bound_levels, indicator

#: A plan keeps ``KEEP_FACTOR ×`` (kernels whose bound reaches the result, less the rounding slack) ``+ KEEP_EXTRA``.
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
    grid). ``slack`` is ``c`` of ``bound = lo + c·L_max``."""

    num_kernels: int
    perm: Optional[Tensor]  # taps grouped contiguously (device), or None for one group
    slices: list[tuple[int, int]]
    ones: Tensor  # (T,) ones for one group, the (T, G) group indicator otherwise
    stages: list[_Stage]  # coarse stages, then the final selection
    full: _Stage
    slack: float = 0.0

    def evaluated(self) -> int:
        return self.stages[-1].count if self.stages else self.num_kernels

    def max_amplitude(self, kernels: Tensor) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """``(amp, lo, L_max)`` as 0-d tensors (``lo``, ``L_max`` ``None`` without pruning): the constant is
        ``max(amp, lo + slack·L_max)``. No host sync, fixed shapes, few ops (once per layer per step)."""
        if self.perm is not None:
            kernels = kernels.index_select(1, self.perm)
        if not self.stages:
            return _amplitude(kernels, self.full, self.slices, per_kernel=False), None, None
        l1 = upper = _l1(kernels, self.ones)
        lo: Optional[Tensor] = None
        l_max: Optional[Tensor] = None
        coarse = len(self.stages) > 1
        for stage in self.stages:
            if stage.count < upper.shape[0]:
                upper, pos = upper.topk(stage.count)  # sorted, descending
                if coarse and l_max is None and lo is None:
                    l_max = upper[0]  # still the L1 bounds: their maximum
                lo = upper[-1]
                kernels = kernels.index_select(0, pos)
            if stage.mats:
                upper = _tighten(_amplitude(kernels, stage, self.slices, per_kernel=True), lo, upper)
        amp = _amplitude(kernels, self.full, self.slices, per_kernel=False)
        if lo is None:  # nothing was dropped
            return amp, None, None
        if not coarse:
            l_max = lo
        elif l_max is None:
            l_max = l1.amax()
        return amp, lo, l_max


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
    result less the slack) ``+ 8``; the cheapest subset of the coarse levels wins (each stage also costs
    :data:`~san_core._pruning.STAGE_OVERHEAD`), and no pruning when even that costs over
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
    threshold = math.sqrt(float(exact)) * (1 - 1e-6)
    overhead = STAGE_OVERHEAD.get(kernels.device.type, STAGE_OVERHEAD["cpu"])
    l1 = _l1(grouped, ones)
    l_max = float(l1.max())
    best_cost, best = WORTH * num_kernels * full_freqs + overhead, None
    levels = bound_levels(groups, grid)
    for subset in ([], levels[:1], levels[1:], levels):
        scales = [math.sqrt(f) for _, f in subset]  # f' = √(1/(1 - α²/2))
        slack = 2 * _margin(grouped) * (1 + max(scales, default=1.0))
        cut = threshold - slack * l_max
        upper, rows, lo = l1, grouped, None
        stages, cost = [], overhead * (2 + len(subset))
        for (coarse, _), scale in zip(subset, scales):
            count = _keep(upper, cut)
            if count < upper.shape[0]:
                upper, pos = upper.topk(count)
                lo, rows = upper[-1], rows.index_select(0, pos)
            stage = _make_stage(coarse, scale, count, groups, grouped, max_memory)
            upper = _tighten(_amplitude(rows, stage, slices, per_kernel=True), lo, upper)
            stages.append(stage)
            cost += count * math.prod(_dft.half_spectrum_shape(coarse))
        final = _keep(upper, cut)
        if min([s.count for s in stages] + [final]) >= num_kernels:
            continue  # nothing dropped: not pruning
        cost += final * full_freqs
        if cost < best_cost:
            best_cost, best = cost, (stages, final, slack)
    if best is None:
        return unpruned
    stages, final, slack = best
    full = _make_stage(tuple(grid), 1.0, final, groups, grouped, max_memory)
    return StaticPlan(num_kernels, perm, slices, ones, [*stages, _Stage(final)], full, slack)
