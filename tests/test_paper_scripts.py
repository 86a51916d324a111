"""Every ``benchmarks.paper`` script in its ``--quick`` mode (synthetic data, tiny models): outputs and sane numbers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.paper import _gan, fig4_exact_vs_sn
from benchmarks.paper import all as paper_all

NAMES = ("fig2", "fig3", "fig4", "fig5", "eq9")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Run ``python -m benchmarks.paper.all --quick`` once (cache and outputs in a temp dir)."""
    root = tmp_path_factory.mktemp("paper")
    mp = pytest.MonkeyPatch()
    mp.setattr(_gan, "CACHE", root / "cache")
    mp.setattr(fig4_exact_vs_sn, "CACHE", root / "cache")
    threads = torch.get_num_threads()
    try:  # one thread: batched SVDs and small convs are much faster so on a shared CPU
        assert paper_all.main(["--quick", "--out-dir", str(root), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
        mp.undo()
    return {name: json.loads((root / f"paper_{name}_quick.json").read_text()) for name in NAMES} | {"root": root}


@pytest.mark.parametrize("name", NAMES)
def test_files_and_metadata(outputs, name):
    root = outputs["root"]
    assert (root / f"paper_{name}_quick.png").read_bytes()[:4] == b"\x89PNG"
    md = (root / f"paper_{name}_quick.md").read_text()
    assert "- device: CPU" in md and "torch " in md and "git commit:" in md and "--quick" in md
    assert outputs[name]["meta"]["wall_s"] > 0


def test_fig3_orderings(outputs):
    panels = outputs["fig3"]["panels"]
    assert len(panels) == 3
    for rows in panels.values():
        for r in rows:  # stride-1 convs on maps larger than their kernels
            assert r["san"] <= r["exact"] * (1 + 1e-5), r
            assert r["sn"] <= r["exact"] * (1 + 1e-5) <= 3 * r["sn"] * (1 + 1e-4), r


def test_fig5_histograms(outputs):
    data = outputs["fig5"]
    for label, hist in data["histograms"].items():
        assert sum(hist["counts"]) == 64 * 8, label  # 64 images × 8 channels
        assert 0 <= data["zero_fraction"][label] <= 1
    assert {r["name"] for r in data["layers"]} >= {"blocks.0.conv1", "fc"}


def test_eq9_gain_and_underestimate(outputs):
    data = outputs["eq9"]
    assert data["gain_64sq"]["0.25"] == pytest.approx(1.185, abs=1e-3)
    assert data["max_rel_diff_vs_san_core"] < 1e-9
    for res in data["sources"].values():
        ratios = list(res["mean_ratio"].values())
        assert all(0 < v <= 1 for v in ratios) and ratios == sorted(ratios)


def test_fig4_normalizations_hold(outputs):
    results = outputs["fig4"]["results"]
    assert set(results) == {"sn", "sn_exact", "san"}
    for res in results.values():
        assert len(res["history"]["d_loss"]) == 3 and all(math.isfinite(v) for v in res["history"]["d_loss"])
    exact = [layer["exact"] for layer in results["sn_exact"]["layers"]]
    assert all(0.95 < v < 1.05 for v in exact), exact  # W / σ₁(W) after the last critic step
    for layer in results["san"]["layers"]:
        assert layer["san"] == pytest.approx(1.0, rel=1e-4)


def test_fig2_sn_bounds_the_slope(outputs):
    fits = outputs["fig2"]["fits"]
    for key, fit in fits.items():
        if "layer-wise SN" in key:
            assert fit["max_slope"] <= 1 + 1e-6
    zigzag = [fits[k]["final_mse"] for k in fits if k.startswith("zigzag")]
    assert zigzag[0] < zigzag[1]  # no normalization fits better than layer-wise SN


def test_all_rejects_unknown_scripts(capsys):
    with pytest.raises(SystemExit):
        paper_all.main(["--only", "fig9"])
    assert "unknown scripts" in capsys.readouterr().err
