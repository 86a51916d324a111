"""The speed table's U-Net critic: ``UNetCritic`` is Real-ESRGAN's ``UNetDiscriminatorSN`` layer for layer and
computes the same function (checked against the installed BasicSR), and the treatments touch exactly conv1-conv8."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import san_core
from benchmarks import speed_side_by_side
from benchmarks.gan.critics_extra import UNetCritic, upstream_unet
from benchmarks.gan.treatments import apply_treatment, parse_treatment

REPO = Path(__file__).resolve().parents[1]
NORMALIZED = [f"conv{i}" for i in range(1, 9)]


def _wrapped_upstream() -> nn.Module:
    if importlib.util.find_spec("basicsr") is None:  # (san_basicsr itself imports, and raises ImportError, without it)
        pytest.skip('needs the [basicsr] extra (pip install "sparsity-aware-norm[basicsr]")')
    net = upstream_unet()
    assert net is not None
    return net


def _upstream() -> nn.Module:
    return _wrapped_upstream().net


def test_unet_critic_matches_realesrgan_unet_layer_for_layer_and_in_its_forward():
    up = _upstream()
    ours = UNetCritic()
    theirs = {n: (type(m), m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.bias is None)
              for n, m in up.named_modules() if isinstance(m, nn.Conv2d)}  # fmt: skip
    mine = {n: (type(m), m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.bias is None)
            for n, m in ours.named_modules() if isinstance(m, nn.Conv2d)}  # fmt: skip
    assert mine == theirs and len(mine) == 10
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in up.parameters()) == 4_376_897
    ours.load_state_dict(up.state_dict())  # SN stripped upstream: weight_orig is its plain weight now
    x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    out = ours(x)
    assert out.shape == (2, 1, 32, 48)
    torch.testing.assert_close(out, up(x), rtol=0, atol=0)
    ours.skip_connection = up.skip_connection = False
    torch.testing.assert_close(ours(x), up(x), rtol=0, atol=0)


@pytest.mark.parametrize("wrapped", [False, True], ids=["UNetCritic", "basicsr"])
def test_unet_treatments_touch_exactly_conv1_to_conv8(wrapped):
    base = _wrapped_upstream() if wrapped else UNetCritic(num_feat=8)
    prefix = "net." if wrapped else ""
    x = torch.randn(1, 3, 16, 16)
    targets = speed_side_by_side.TARGETS["unet"]
    sn = apply_treatment(parse_treatment("sn"), copy.deepcopy(base), (x,), targets=targets).critic
    convs = {n: m for n, m in sn.named_modules() if isinstance(m, nn.Conv2d)}
    assert sorted(n for n, m in convs.items() if parametrize.is_parametrized(m, "weight")) == sorted(
        prefix + n for n in NORMALIZED
    )
    san = apply_treatment(parse_treatment("san"), copy.deepcopy(base), (x,), targets=targets)
    assert isinstance(san.san, san_core.SAN) and sorted(san.san.layers) == sorted(prefix + n for n in NORMALIZED)
    modes = {n: m.padding_mode for n, m in san.critic.named_modules() if isinstance(m, nn.Conv2d)}
    assert modes == {prefix + f"conv{i}": "circular" if 1 <= i <= 8 else "zeros" for i in range(10)}
    circ = apply_treatment(parse_treatment("circular"), copy.deepcopy(base), (x,), targets=targets).critic
    assert {n: m.padding_mode for n, m in circ.named_modules() if isinstance(m, nn.Conv2d)} == modes


def test_speed_cli_unet_row_at_a_reduced_size(tmp_path):
    stem = tmp_path / "unet"
    args = ["--critics", "unet", "--size", "16", "--batch", "1", "--rounds", "1", "--treatments", "sn,san",
            "--threads", "1", "--out", str(stem)]  # fmt: skip
    assert speed_side_by_side.main(args) == 0
    res = json.loads(stem.with_suffix(".json").read_text())["results"]["unet"]
    assert res["shape"] == [3, 16, 16] and res["batch"] == 1 and list(res["treatments"]) == ["none", "sn", "san"]
    md = stem.with_suffix(".md").read_text()
    assert "| unet | 1 × 3×16×16 |" in md and "**Input size reduced to 16×16 for every critic**" in md


def test_gpu_speed_stage_times_the_unet_without_importing_basicsr():
    code = textwrap.dedent("""
        import sys, torch
        from benchmarks.gpu import speed
        from benchmarks.speed_side_by_side import bench_critic
        assert speed.REAL_BATCH["unet"] == 12
        res = bench_critic("unet", torch.device("cpu"), 1, 1, ["none", "sn", "san"], shape=(3, 16, 16),
                           profile_memory=False, build=speed.BUILD["unet"])
        print(sorted(res), sorted(m for m in sys.modules if m.split(".")[0] in ("basicsr", "san_basicsr")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "['none', 'san', 'sn'] []"
