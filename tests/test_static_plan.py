"""The sync-free plan's amplitude-domain bounds (``san_core._static_plan``) hold against float64 brute force: each
coarse stage's per-kernel value (Bernstein factor and the Parseval-relative rounding slack folded into its phase
matrices) is above the kernel's peak amplitude over the whole torus, and a plan with deliberately too few kept
kernels returns ``max(amp, lo · inflate)`` ≥ the exact value (equal when verified)."""

from __future__ import annotations

import pytest
import torch
from test_pruning import FINE, adversarial_kernels, brute_power, kernel_set

from san_core import _static_plan
from san_core.spectrum import conv_geometry

GEOMETRIES = [(3, 1, 1), (4, 1, 1), (4, 2, 1), (4, 1, 2), (5, 1, 2)]  # (k, dilation, stride)
KINDS = ["adversarial", "gaussian", "heavy", "sparse", "checker"]


def setup(k: int, dilation: int, stride: int, kind: str, coarse: tuple[int, int] = (19, 19)):
    grid, groups = conv_geometry((k, k), (96, 80), (stride, stride), (dilation, dilation), False, "exact")
    kernels = adversarial_kernels(k, dilation, coarse) if kind == "adversarial" else kernel_set(kind, k)
    kernels = kernels.float()
    plan = _static_plan.build_plan(kernels, groups, grid, brute_power(kernels, groups, grid).amax(), 1 << 26,
                                   prune=False)  # fmt: skip
    regrouped = [(torch.arange(a, b), offs) for (a, b), (_, offs) in zip(plan.slices, groups)]
    grouped = kernels if plan.perm is None else kernels.index_select(1, plan.perm)
    return grid, groups, regrouped, grouped, kernels, plan


@pytest.mark.parametrize("k, dilation, stride", GEOMETRIES)
@pytest.mark.parametrize("kind", KINDS)
def test_coarse_stage_values_bound_the_peak_amplitude(k: int, dilation: int, stride: int, kind: str) -> None:
    grid, groups, regrouped, grouped, kernels, plan = setup(k, dilation, stride, kind)
    levels = _static_plan.stage_levels(regrouped, grid, grouped)
    assert levels, "the grid is large enough for at least one level"
    torus = brute_power(kernels, groups, (FINE, FINE)).sqrt()  # ≈ the peak over the whole torus
    on_grid = brute_power(kernels, groups, grid).sqrt()
    for coarse, scale in levels:
        adversarial = adversarial_kernels(k, dilation, coarse).float() if kind == "adversarial" else None
        if adversarial is not None:  # tones midway between this level's samples
            kernels = adversarial
            grouped = kernels if plan.perm is None else kernels.index_select(1, plan.perm)
            torus = brute_power(kernels, groups, (FINE, FINE)).sqrt()
            on_grid = brute_power(kernels, groups, grid).sqrt()
        stage = _static_plan._make_stage(coarse, scale, kernels.shape[0], regrouped, grouped, 1 << 26)
        bound = _static_plan._amplitude(grouped, stage, plan.slices, per_kernel=True).double()
        assert (bound >= torus * (1 - 1e-9)).all() and (bound >= on_grid).all()
        assert (bound <= torus * scale * (1 + 1e-3)).all()  # no looser than its factor
    l1 = _static_plan._l1(grouped, plan.ones).double()
    assert (l1 * (1 + 2 * 8 * kernels.shape[1] * torch.finfo(torch.float32).eps) >= on_grid).all()


@pytest.mark.parametrize("k, dilation, stride", GEOMETRIES)
@pytest.mark.parametrize("kind", ["heavy", "gaussian", "adversarial"])
@pytest.mark.parametrize("counts", [(12, 3), (6, 1), (15, 14)])
def test_a_plan_keeping_too_few_kernels_is_still_a_certified_bound(
    k: int, dilation: int, stride: int, kind: str, counts: tuple[int, int]
) -> None:
    grid, groups, regrouped, grouped, kernels, plan = setup(k, dilation, stride, kind)
    exact = float(brute_power(kernels, groups, grid).amax().sqrt())
    inflate = 1 + 2 * 8 * kernels.shape[1] * torch.finfo(torch.float32).eps
    for levels in ([], _static_plan.stage_levels(regrouped, grid, grouped)):
        stages = [_static_plan._make_stage(c, s, counts[0], regrouped, grouped, 1 << 26) for c, s in levels[:1]]
        stages.append(_static_plan._Stage(counts[1]))
        full = _static_plan._make_stage(tuple(grid), 1.0, counts[1], regrouped, grouped, 1 << 26)
        pruned = _static_plan.StaticPlan(16, plan.perm, plan.slices, plan.ones, stages, full, inflate)
        amp, lo = pruned.max_amplitude(kernels)
        assert lo is not None
        result = max(float(amp), float(lo) * inflate)
        assert result >= exact * (1 - 1e-6), levels
        if float(lo) * inflate <= float(amp):  # verified: exact
            assert result == pytest.approx(exact, rel=1e-6)
    # and a plan that keeps enough kernels is exact and verified
    enough = _static_plan.build_plan(kernels, groups, grid, torch.tensor(exact**2), 1 << 26)
    amp, lo = enough.max_amplitude(kernels)
    assert float(amp) == pytest.approx(exact, rel=1e-6)
    assert lo is None or float(lo) * enough.inflate <= float(amp)
