"""Channel sparsity of a critic's features (the paper's Fig. 5) and per-layer gains from it (beyond the paper).

Why sparsity matters to SAN: for one output channel ``i`` of a circular conv with kernels ``w_ij``,

    ‖y_i‖ = ‖Σ_j w_ij ⊛ x_j‖ ≤ Σ_j ‖w_ij ⊛ x_j‖ ≤ ‖W‖₀,∞ · Σ_j ‖x_j‖ = ‖W‖₀,∞ · √k_eff · ‖x‖,

with ``k_eff = (Σ_j ‖x_j‖)² / Σ_j ‖x_j‖²`` (Parseval, then the triangle inequality). ``k_eff ≤ ‖x‖₀``
(Cauchy–Schwarz), with equality when the non-zero channels have equal norms; so ``‖W‖₀,∞`` bounds the
layer's gain exactly on 1-sparse inputs (``k_eff = 1``) and under-estimates it by ``√k_eff`` on denser ones.
``k_eff / n`` is the *effective density* of an input with ``n`` channels: threshold-free and scale-invariant,
so it is also defined for LeakyReLU features, where no channel is exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


def effective_density(norms: Tensor) -> Tensor:
    """Per sample, ``k_eff / k = (Σ_j a_j)² / (k · Σ_j a_j²)`` of channel norms ``a`` ``(N, k)``; in ``[1/k, 1]``.

    ``NaN`` for a sample whose channels are all zero (no direction to measure).
    """
    if norms.dim() != 2 or not norms.is_floating_point() or bool((norms < 0).any()):
        raise ValueError(f"effective_density: expected non-negative channel norms (N, k), got {tuple(norms.shape)}")
    a = norms.to(torch.float64)
    s1, s2 = a.sum(1), a.square().sum(1)
    return torch.where(s2 > 0, s1.square() / (a.shape[1] * s2).clamp_min(1e-300), torch.full_like(s1, math.nan))


@dataclass
class ChannelSparsity:
    """Channel-sparsity statistics of features ``x`` with channels ``x_1 … x_k`` (the paper's Fig. 5).

    ``norms``: ``(N, k)`` channel norms ``‖x_i‖`` (float64); ``zero_fraction``: ``(N,)`` per-sample
    fraction of channels with ``‖x_i‖ ≤ threshold`` (``1 − ‖x‖₀/k``); ``counts``/``edges``: histogram
    of all norms (``bins`` equal bins over ``[0, max]``; ``counts[0]`` includes the exact zeros, also
    counted alone in ``zeros``).
    """

    norms: Tensor
    zero_fraction: Tensor
    counts: Tensor
    edges: Tensor
    zeros: int
    threshold: float

    @property
    def mean_zero_fraction(self) -> float:
        return float(self.zero_fraction.mean())

    @property
    def effective_density(self) -> Tensor:
        """``(N,)`` per-sample ``k_eff / k`` (module docstring), ``NaN`` for all-zero samples."""
        return effective_density(self.norms)

    @property
    def mean_effective_density(self) -> float:
        """Mean ``k_eff / k`` over the samples that have a non-zero channel (``NaN`` if none has)."""
        return float(self.effective_density.nanmean())


def channel_sparsity(features: Tensor, threshold: float = 0.0, *, bins: int = 50) -> ChannelSparsity:
    """Channel norms of ``features`` ``(N, k, *spatial)`` (or ``(N, k)``: scalar channels) and their sparsity."""
    who = "channel_sparsity"
    if features.dim() < 2 or not features.is_floating_point():
        raise ValueError(
            f"{who}: expected floating features (N, channels, *spatial), got {features.dtype} {tuple(features.shape)}"
        )
    if not threshold >= 0 or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"{who}: expected threshold >= 0 and bins >= 1, got threshold={threshold!r} bins={bins!r}")
    flat = features.detach().to(torch.float64).reshape(features.shape[0], features.shape[1], -1)
    norms = torch.linalg.vector_norm(flat, dim=2).cpu()
    zero_fraction = (norms <= threshold).to(torch.float64).mean(dim=1)
    top = float(norms.max()) if norms.numel() else 0.0
    counts, edges = torch.histogram(norms.flatten(), bins=bins, range=(0.0, top if top > 0 else 1.0))
    return ChannelSparsity(norms, zero_fraction, counts, edges, int((norms == 0).sum()), float(threshold))


def gain_from_sparsity(
    density: Mapping[str, float],
    caps: Optional[Mapping[str, float]] = None,
    *,
    exponent: float = 0.5,
    reference: Optional[float] = None,
) -> dict[str, float]:
    """EXPERIMENTAL heuristic for a per-layer gain ``g_l`` from measured channel density (not from the paper).

    The paper's Limitations suggest a per-layer compensation factor by sparsity (future work). Here
    ``density[l]`` is the mean fraction of active input channels of layer ``l``: the effective density
    ``k_eff / n`` (:func:`effective_density`, what ``san-inspect`` uses) or ``1 − zero_fraction``. A
    layer's gain is at most ``√k_eff · ‖W‖₀,∞`` (module docstring); so, keeping SAN's calibration on the
    sparsest layer (``reference``, default the smallest density, ``g = 1``), a layer whose inputs are ``ρ``
    times denser gets ``g_l = clip(ρ^exponent, 1, caps[l])``, ``exponent = 1/2`` mirroring ``√k_eff``.
    ``caps[l]`` should be ``σ₁/‖W‖₀,∞`` so that no layer is normalized more strongly than exact spectral norm (which the
    paper shows stalls training). Use with ``SAN(..., layer_gains=gains)``. Not a validated recipe: compare
    it side by side (``python -m benchmarks.side_by_side --treatments san,san-gains``).
    """
    if not density:
        return {}
    if any(not 0 < d <= 1 for d in density.values()):
        raise ValueError(f"gain_from_sparsity: expected densities in (0, 1], got {dict(density)}")
    ref = min(density.values()) if reference is None else float(reference)
    if not 0 < ref <= 1:
        raise ValueError(f"gain_from_sparsity: expected reference in (0, 1], got {reference!r}")
    gains = {}
    for name, d in density.items():
        g = max(1.0, (d / ref) ** exponent)
        if caps is not None and name in caps:
            g = min(g, max(1.0, float(caps[name])))
        gains[name] = g
    return gains
