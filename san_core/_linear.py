"""``σ₁`` of Linear/Embedding weights without a syncing solver (the sync-free path).

* One row or one column: ``σ₁ = ‖W‖₂`` (closed form, exact).
* Otherwise, with ``m = min(rows, cols) ≤`` :data:`MAX_GRAM`: the float64 Gram matrix ``G`` (``m × m``)
  squared ``q`` = :data:`SQUARINGS` times with trace normalization, ``P ∝ G^K``, ``K = 2^q``, and
  ``λ = tr(G P) / tr(P) = Σ λ_i^{K+1} / Σ λ_i^K``. Every other eigenvalue ``λ_i = ρ λ₁`` contributes an error
  of at most ``λ₁ (1 - ρ) ρ^K ≤ λ₁ / (e K)``, so ``0 ≤ λ₁ - λ ≤ λ₁ (m - 1) / (e K)``: with ``q = 30``,
  a relative error of ``σ₁`` below ``(m - 1) · 1.8e-10`` (≤ 1.9e-7 for ``m ≤ 1024``), whatever the spectral gap;
  degenerate top eigenvalues are exact. Fixed shapes, no data-dependent control flow.
* Larger ``m``: :data:`POWER_ITERATIONS` power iterations on ``G`` from a persistent vector (a lower bound on
  ``σ₁``, the Rayleigh quotient; exact only in the limit, like spectral norm's estimate).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

SQUARINGS = 30
#: Trace-normalize every this many squarings. After a normalization P's eigenvalues lie in [0, 1] and sum to 1, so
#: the top one is ≥ 1/m; ``RENORMALIZE`` squarings later it is ≥ m^-(2^6) ≥ 2e-193 (m ≤ 1024), a normal float64, and
#: no entry exceeds 1: nothing under- or overflows that matters (smaller eigenvalues may underflow: they vanish anyway).
RENORMALIZE = 6
MAX_GRAM = 1024
POWER_ITERATIONS = 50


def kind(shape: tuple[int, ...]) -> str:
    """``"row"`` (closed form), ``"gram"`` (repeated squaring) or ``"power"`` for a weight of this shape."""
    rows, cols = shape[0], 1
    for size in shape[1:]:
        cols *= size
    m = min(rows, cols)
    return "row" if m == 1 else "gram" if m <= MAX_GRAM else "power"


def _normalized(mat: Tensor) -> Tensor:
    """``mat / tr(mat)`` (a zero matrix stays zero)."""
    return mat / torch.trace(mat).clamp_min(torch.finfo(torch.float64).tiny)


def sigma(weight: Tensor, cdtype: torch.dtype, u: Optional[Tensor] = None) -> Tensor:
    """``σ₁`` of ``weight.reshape(rows, -1)`` in ``cdtype``, 0-d; ``u`` (``(m,)`` float64) persists for ``"power"``."""
    mat = weight.reshape(weight.shape[0], -1)  # the engine holds no_grad
    method = kind(tuple(mat.shape))
    if method == "row":
        return torch.linalg.vector_norm(mat.to(cdtype))
    wide = mat.to(torch.float64)
    gram = wide @ wide.t() if wide.shape[0] <= wide.shape[1] else wide.t() @ wide
    tiny = torch.finfo(torch.float64).tiny
    if method == "gram":
        p = _normalized(gram)
        for step in range(1, SQUARINGS + 1):
            p = p @ p
            if step % RENORMALIZE == 0 or step == SQUARINGS:
                p = _normalized(p)
        lam = (gram * p).sum()  # tr(G P) with P symmetric and tr(P) = 1
    else:
        assert u is not None
        vec = u
        for _ in range(POWER_ITERATIONS):
            vec = gram @ vec
            vec = vec / torch.linalg.vector_norm(vec).clamp_min(tiny)
        u.copy_(vec)
        lam = vec @ (gram @ vec)
    return lam.clamp_min(0).sqrt().to(cdtype)


def power_sigma(weight: Tensor, cdtype: torch.dtype, u: Tensor, n_iter: int) -> Tensor:
    """``linear_method="power"`` on the sync-free path: spectral norm's ``n_iter`` power iterations from the
    persistent ``u`` (updated in place). Also the body of :func:`~san_core.spectrum.linear_constant`'s ``"power"``
    method, which adds the eager checks and the precision context (the engine sets that around the whole step)."""
    mat = weight.reshape(weight.shape[0], -1)
    mat = mat if mat.dtype == cdtype else mat.to(cdtype)
    vec = torch.nn.functional.normalize(u if u.dtype == cdtype else u.to(cdtype), dim=0)
    v = vec
    for _ in range(n_iter):
        v = torch.nn.functional.normalize(mat.t() @ vec, dim=0)
        vec = torch.nn.functional.normalize(mat @ v, dim=0)
    u.copy_(vec)
    return torch.dot(vec, mat @ v)
