"""Collapse diagnostics: running per-pixel std equals the direct float64 std, the top-class fraction, the loss window,
and the documented rule at its thresholds."""

from __future__ import annotations

import pytest
import torch

from benchmarks.gan import collapse


def test_pixel_moments_over_batches_match_direct_std():
    x = torch.rand(37, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    m = collapse.PixelMoments()
    for chunk in x.split(10):
        m.add(chunk)
    expected = float(x.double().std(0).mean())
    assert m.std() == pytest.approx(expected, rel=1e-10) and collapse.pixel_std(x) == pytest.approx(expected)
    assert collapse.pixel_std(x[:1].expand(5, -1, -1, -1)) == pytest.approx(0.0, abs=1e-12)  # one image for every z


def test_top_class_fraction_and_loss_window():
    logits = torch.zeros(10, 4)
    logits[:7, 2] = 1.0
    logits[7:, 0] = 1.0
    assert collapse.top_class_fraction(logits) == pytest.approx(0.7)
    losses = [{"step": s, "d": float(s), "g": -float(s)} for s in (1, 2, 3, 4)]
    assert collapse.mean_losses(losses, 1, 3) == {"d_loss": 2.5, "g_loss": -2.5}
    assert collapse.mean_losses(losses, 4, 9) == {"d_loss": None, "g_loss": None}


def test_collapse_rule_thresholds():
    real = 0.25
    assert collapse.is_collapsed({"top_class": 0.8, "pixel_std": 0.2}, real) is True  # ≥ 80 % in one class
    assert collapse.is_collapsed({"top_class": 0.79, "pixel_std": 0.2}, real) is False
    assert collapse.is_collapsed({"top_class": 0.3, "pixel_std": 0.0249}, real) is True  # < 10 % of the real std
    assert collapse.is_collapsed({"top_class": 0.3, "pixel_std": 0.025}, real) is False
    assert collapse.is_collapsed({"top_class": 0.3, "pixel_std": 0.001}, None) is False  # no real reference
    assert collapse.is_collapsed({"fid": 3.0}, real) is None  # not measured (an old result)
