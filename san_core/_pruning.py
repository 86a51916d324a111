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
path); :class:`san_core._static_plan.StaticPlan` uses them with fixed sizes (``topk``, no sync, in the amplitude
domain) for the sync-free path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
