"""The pruning bounds of ``san_core._pruning`` hold against brute force, and pruning stays exact on every kind of
weight, including adversarial ones (tones between the coarse samples; kernels no bound can separate)."""

from __future__ import annotations

import math

import pytest
import torch

from san_core import _dft, _pruning, conv_constant
from san_core.spectrum import conv_geometry

FINE = 256  # brute-force grid per dimension: ≥ 4 × every coarse grid used here (≤ the continuous maximum)


def brute_power(kernels: torch.Tensor, groups, grid) -> torch.Tensor:
    """Per kernel ``max_ω Σ_g |DFT_g|²`` on ``grid`` by float64 FFT of each polyphase group folded onto the grid."""
    total = None
    for idx, offs in groups:
        folded = _dft.fold_onto_grid(kernels[:, idx].double(), offs, grid)
        power = torch.fft.fftn(folded, dim=tuple(range(1, len(grid) + 1))).abs().square()
        total = power if total is None else total + power
    assert total is not None
    return total.flatten(1).amax(dim=1)


def adversarial_kernels(k: int, dilation: int, coarse: tuple[int, int], count: int = 16) -> torch.Tensor:
    """Real tones cos(θ·t + φ) with θ midway between coarse samples, and near-Dirichlet kernels, on a k×k grid."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(k, dtype=torch.float64) * dilation
    out = []
    for i in range(count):
        theta = [2 * math.pi * (j + 0.5) / m for j, m in zip(torch.randint(0, 8, (2,), generator=g).tolist(), coarse)]
        phase = float(torch.rand(1, generator=g)) * 2 * math.pi
        tone = torch.cos(theta[0] * t[:, None] + theta[1] * t[None, :] + phase)
        out.append(tone if i % 2 else tone * torch.hann_window(k, periodic=False, dtype=torch.float64).outer(
            torch.ones(k, dtype=torch.float64)) + 1e-3)  # fmt: skip
    return torch.stack(out).reshape(count, -1)


def kernel_set(kind: str, k: int, count: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "gaussian":
        return torch.randn(count, k * k, generator=g, dtype=torch.float64)
    if kind == "heavy":
        torch.manual_seed(1)
        return torch.distributions.StudentT(torch.tensor(1.0, dtype=torch.float64)).sample((count, k * k))
    if kind == "sparse":  # one tap each: the L1 bound is tight, the coarse one is not needed
        return torch.eye(k * k, dtype=torch.float64)[torch.randint(0, k * k, (count,), generator=g)] * 3
    checker = (-1.0) ** (torch.arange(k)[:, None] + torch.arange(k)[None, :]).double()
    return checker.flatten() * torch.rand(count, 1, generator=g, dtype=torch.float64)  # Nyquist peaks


@pytest.mark.parametrize("k, dilation, stride", [(3, 1, 1), (4, 1, 1), (4, 2, 1), (4, 1, 2), (5, 1, 2)])
@pytest.mark.parametrize("kind", ["adversarial", "gaussian", "heavy", "sparse", "checker"])
def test_coarse_bound_is_above_the_brute_force_maximum(k: int, dilation: int, stride: int, kind: str) -> None:
    grid, groups = conv_geometry((k, k), (96, 80), (stride, stride), (dilation, dilation), False, "exact")
    levels = _pruning.bound_levels(groups, grid)
    assert levels, "the grid is large enough for at least one level"
    for level in levels:
        coarse, factor = level
        kernels = adversarial_kernels(k, dilation, coarse) if kind == "adversarial" else kernel_set(kind, k)
        kernels = kernels.float()
        bound = _pruning.coarse_bounds(kernels, groups, level).double()
        fine = brute_power(kernels, groups, (FINE, FINE))  # ≈ the maximum over the whole torus
        on_grid = brute_power(kernels, groups, grid)
        assert (bound >= fine * (1 - 1e-9)).all() and (bound >= on_grid).all()
        assert (bound <= fine * factor * (1 + 1e-3)).all()  # and it is no looser than its factor
        # the L1 bound holds too and is what the sparse kernels need
        upper, at_zero = _pruning.l1_bounds(kernels, _pruning.indicator(groups, kernels.shape[1], kernels.dtype,
                                                                        kernels.device))  # fmt: skip
        assert (upper.double() >= on_grid * (1 - 1e-6)).all()
        assert torch.allclose(at_zero.double(), brute_power(kernels, groups, (1, 1)), rtol=1e-5)


def test_the_factor_is_needed() -> None:
    """A long windowed tone peaking midway between two coarse samples: the coarse maximum alone is below the
    true maximum on the fine grid, the bound (with its factor) is above it."""
    grid, groups = conv_geometry((1, 16), (1, 4096), (1, 1), (1, 1), False, "paper")
    (coarse, factor), *_ = _pruning.bound_levels(groups, grid)
    theta = 2 * math.pi * 5.5 / coarse[1]
    t = torch.arange(16, dtype=torch.float64)
    kernel = (torch.hann_window(16, periodic=False, dtype=torch.float64) * torch.cos(theta * t)).reshape(1, -1)
    coarse_max = float(_dft._block_power(kernel, groups, coarse, 10**6))
    exact = float(brute_power(kernel, groups, grid))
    assert coarse_max < 0.99 * exact
    assert exact <= float(_pruning.coarse_bounds(kernel, groups, (coarse, factor))) <= exact * factor * 1.01


@pytest.mark.parametrize("kind", ["adversarial", "gaussian", "heavy", "sparse", "checker"])
@pytest.mark.parametrize("method", ["pruned", "auto", "matmul"])
def test_every_method_is_exact_on_every_kind(kind: str, method: str) -> None:
    kernels = adversarial_kernels(4, 1, (19, 19)) if kind == "adversarial" else kernel_set(kind, 4)
    weight = kernels.reshape(4, 4, 4, 4)
    for kw in ({}, {"stride": 2, "stride_mode": "exact"}, {"dilation": 2}):
        expected = float(conv_constant(weight, (96, 80), method="fft", **kw))
        stats: dict = {}
        got = float(conv_constant(weight, (96, 80), method=method, stats=stats, **kw))
        assert got == pytest.approx(expected, rel=1e-12), kw
        assert stats["evaluated"] <= stats["total"] == 16
