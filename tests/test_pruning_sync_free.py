"""The sync-free path's fixed-size pruning (``StaticPlan``) is exact against float64 FFT references on random,
heavy-tailed, low-pass and adversarial weights (nothing prunable: the unpruned product), including weights that
drift after the plan was made; an unverified step gives a certified upper bound, is counted, and re-plans."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from san_core import SAN, conv_constant


def weights(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(shape, generator=g)
    if kind == "heavy":  # Student-t, 1 degree of freedom: a few huge kernels
        torch.manual_seed(seed)
        return torch.distributions.StudentT(1.0).sample(shape) * 0.01 + torch.randn(shape, generator=g) * 1e-4
    if kind == "lowpass":  # mostly DC: peaks at ω = 0
        return torch.rand(shape, generator=g) + 0.1 * torch.randn(shape, generator=g)
    # adversarial: every kernel the same magnitude spectrum (shifted, sign-flipped copies), no kernel prunable
    base = torch.randn(shape[2:], generator=g)
    flat = [
        torch.roll(base, (i % 2, j % 3), dims=(0, 1)) * (-1) ** (i + j)
        for i in range(shape[0])
        for j in range(shape[1])
    ]
    return torch.stack(flat).reshape(shape)


@pytest.mark.parametrize("kind", ["gaussian", "heavy", "lowpass", "adversarial"])
@pytest.mark.parametrize("conv", ["plain", "strided_exact", "dilated"])
def test_sync_free_constants_are_exact(kind: str, conv: str) -> None:
    torch.manual_seed(0)
    layer = {
        "plain": nn.Conv2d(16, 32, 4),
        "strided_exact": nn.Conv2d(16, 32, 4, stride=2),
        "dilated": nn.Conv2d(16, 32, 3, dilation=2),
    }[conv]
    size = (96, 80)  # large enough (512 kernels, 96×80) for pruning to pay off
    with torch.no_grad():
        layer.weight.copy_(weights(kind, tuple(layer.weight.shape), seed=3))
    model = nn.Sequential(layer)
    stride_mode = "exact" if conv == "strided_exact" else "paper"
    kw = dict(stride=layer.stride, dilation=layer.dilation, stride_mode=stride_mode, method="fft")
    san = SAN(model, input_sizes={"0": size}, sync_free=True, stride_mode=stride_mode)
    for step in range(3):
        with torch.no_grad():  # a drifting weight: steps 2 and 3 use the plan made at step 1
            layer.weight.mul_(1 + torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(step)) * 0.1)
        expected = float(conv_constant(layer.weight.double(), size, **kw))
        got = float(san.normalize_()["0"])
        assert got == pytest.approx(expected, rel=1e-6), step
    stats = san.pruning_stats()["0"]
    assert stats["unverified"] == 0 and stats["total"] == 512
    if kind == "adversarial":
        assert stats["evaluated"] == 512  # nothing can be pruned: the plan is the unpruned product
    elif kind in ("heavy", "lowpass"):
        assert stats["evaluated"] < 512


def test_unverified_pruning_gives_an_upper_bound_and_replans() -> None:
    """The plan keeps few kernels; then the winner becomes a kernel with a small bound: the step returns a
    certified upper bound (never below the exact value), counts it, and the next call re-plans and is exact."""
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 16, 4)
    size = (96, 80)
    with torch.no_grad():
        layer.weight.copy_(weights("heavy", tuple(layer.weight.shape), seed=4))
    san = SAN(nn.Sequential(layer), input_sizes={"0": size}, sync_free=True)
    san.normalize_(force=True)
    assert san.pruning_stats()["0"]["evaluated"] < 128
    with torch.no_grad():  # many equal, spread kernels: the kept top-K cannot verify the result
        layer.weight.copy_(weights("adversarial", tuple(layer.weight.shape), seed=5))
    expected = float(conv_constant(layer.weight.double(), size, method="fft"))
    got = float(san.normalize_(force=True)["0"])
    assert got >= expected * (1 - 1e-6)
    assert san.pruning_stats()["0"]["unverified"] == 1  # counted, and the layer is re-planned
    expected = float(conv_constant(layer.weight.double(), size, method="fft"))
    assert float(san.normalize_(force=True)["0"]) == pytest.approx(expected, rel=1e-6)
    assert san.pruning_stats()["0"] == {"evaluated": 128, "total": 128, "unverified": 1}
