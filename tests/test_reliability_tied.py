"""Issue 14 item 1: a Parameter shared by several selected layers is normalized once, by the largest constant over
every layer that uses it (each at its own input size), on the eager and the sync-free path, in both forms."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from san_core import SAN, apply_san, dry_run
from san_core._reparam import raw_weight


def fft_constant(weight: Tensor, size: tuple[int, int]) -> float:
    """Brute force in float64: max |DFT| of every kernel zero-padded to the map (stride 1 in the DFT, paper mode)."""
    return float(torch.fft.fft2(weight.detach().double(), s=size).abs().max())


def tied_critic() -> nn.Sequential:
    """conv0 (stride 2) sees 8x8, conv2 sees 4x4: one Parameter, two grids."""
    torch.manual_seed(0)
    critic = nn.Sequential(
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten()
    )
    critic[2].weight = critic[0].weight
    return critic


@pytest.mark.parametrize("sync_free", [False, True])
@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
def test_tied_weight_is_divided_once_by_the_largest_constant(sync_free: bool, form: str) -> None:
    critic = tied_critic()
    w0 = critic[0].weight.detach().clone()
    san = apply_san(critic, example_input=torch.randn(2, 4, 8, 8), sync_free=sync_free, form=form)
    assert san.sizes_of("0") == [(8, 8)] and san.sizes_of("2") == [(4, 4)]
    expected = max(fft_constant(w0, (8, 8)), fft_constant(w0, (4, 4)))
    assert fft_constant(w0, (8, 8)) != pytest.approx(fft_constant(w0, (4, 4)), rel=1e-3)  # the sizes matter
    constants = san.normalize_(force=True)
    for name in ("0", "2"):
        assert float(constants[name]) == pytest.approx(expected, rel=1e-5)
    raw = raw_weight(critic[0])
    assert raw is raw_weight(critic[2])
    if form == "rescale":
        torch.testing.assert_close(raw.double(), w0.double() / expected, rtol=1e-5, atol=0)
        effective = raw
    else:
        assert torch.equal(raw, w0)  # the raw weight is untouched
        for i in (0, 2):
            assert float(critic[i].parametrizations.weight[0].s) == pytest.approx(expected, rel=1e-5)
        effective = critic[0].weight
        torch.testing.assert_close(critic[2].weight, effective)
    # the shared weight is now 1-Lipschitz on both grids, exactly 1 on the larger one (the old code gave 1/c)
    after = max(fft_constant(effective, (8, 8)), fft_constant(effective, (4, 4)))
    assert after == pytest.approx(1.0, abs=2e-5)
    again = san.normalize_(force=True)
    assert float(again["0"]) == pytest.approx(1.0 if form == "rescale" else expected, rel=2e-5)  # of the raw W
    described = {d["name"]: d for d in san.describe()}
    assert described["0"]["tied_with"] == ["2"] and described["2"]["tied_with"] == ["0"]
    assert described["0"]["input_sizes"] == [(8, 8)] and described["2"]["input_sizes"] == [(4, 4)]
    san.remove()


def test_dry_run_shows_the_sharing(capsys: pytest.CaptureFixture[str]) -> None:
    selection = dry_run(tied_critic())
    assert selection.tied == {"0": ["2"], "2": ["0"]}
    out = capsys.readouterr().out
    assert "+ 0  [weight shared with 2]" in out and "+ 2  [weight shared with 0]" in out


def test_normalize_at_first_forward_divides_a_tied_weight_once() -> None:
    critic = tied_critic()
    w0 = critic[0].weight.detach().clone()
    san = SAN(critic, input_sizes={"0": (8, 8), "2": (4, 4)}, normalize_at_first_forward=True, sync_free=False)
    critic(torch.randn(1, 4, 8, 8))
    expected = max(fft_constant(w0, (8, 8)), fft_constant(w0, (4, 4)))
    torch.testing.assert_close(critic[0].weight.double(), w0.double() / expected, rtol=1e-5, atol=0)
    san.remove()
