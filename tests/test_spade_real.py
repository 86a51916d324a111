"""SPADE's own ``train.py`` through ``python -m san_spade`` on CPU, on the COCO-Stuff sample.

Runs only when ``SAN_SPADE_ROOT`` points at a checkout of NVlabs/SPADE (its requirements installed:
torchvision, dominate, dill, scipy). Each run is a subprocess executing :func:`_driver`, which runs the
launcher unchanged, watches ``optimizer_D`` steps (kernel-subset generator state, G's values) and then
writes the D/G checks as JSON. After the run every SAN conv must have ``‖W‖₀,∞ = 1`` (``r = 1``), or
subset-max · g = 1 on the subsets drawn at the last step (``r = 0.25``, ``g = 1.3``); G keeps its spectral
norm and its values do not change in a D step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = os.environ.get("SAN_SPADE_ROOT")
DATA = Path(os.environ.get("SAN_SPADE_DATA", TESTS.parents[1] / "shared" / "data" / "spade_coco_stuff_sample"))
pytestmark = [
    pytest.mark.skipif(not ROOT, reason="SAN_SPADE_ROOT is not set: point it at a checkout of NVlabs/SPADE"),
    pytest.mark.skipif(not DATA.is_dir(), reason=f"COCO-Stuff sample not found at {DATA}"),
]
SPADE_ARGS = ["--dataset_mode", "coco", "--dataroot", str(DATA), "--gpu_ids", "-1", "--no_vgg_loss", "--no_html"]
SPADE_ARGS += ["--load_size", "64", "--crop_size", "64", "--batchSize", "1", "--niter", "1", "--max_dataset_size", "2"]
SPADE_ARGS += ["--ngf", "16"]  # a smaller G for CPU; D is SPADE's default (ndf 64, 2 scales, 4 layers)
MIDDLE = [f"discriminator_{d}.model{k}.0.0" for d in (0, 1) for k in (1, 2, 3)]


def _sn_layers(module) -> list[str]:
    from san_core import spectral_norm_style

    return sorted(n for n, m in module.named_modules() if spectral_norm_style(m) is not None)


def _driver() -> None:
    """Subprocess entry: ``main(sys.argv[1:])``, then the checks as JSON into ``$SAN_SPADE_TEST_RESULT``."""
    import san_spade
    import torch
    from san_compat import ensure_torchvision_importable
    from san_spade.checkout import has_sync_batchnorm, import_spade, install_sync_batchnorm_fallback
    from san_spade.launcher import main
    from torch import nn
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from san_core import conv_constant, spectral_norm_style

    root = Path(os.environ["SAN_SPADE_ROOT"]).resolve()
    ensure_torchvision_importable()
    sys.path.insert(0, str(root))
    if not has_sync_batchnorm(root):
        install_sync_batchnorm_fallback()
    networks = import_spade(root)["models.networks"]
    seen: dict = {}
    define_G = networks.define_G

    def capture_G(opt):
        seen["G"] = define_G(opt)
        seen["G_sn"] = _sn_layers(seen["G"])
        return seen["G"]

    def before_step(optimizer, args, kwargs):
        for session in san_spade.active_sessions():
            if optimizer is session.optimizer:
                seen["generator"] = session.san.generator.get_state()
                seen["G_values"] = [p.detach().clone() for p in seen["G"].parameters()]

    networks.define_G = capture_G
    register_optimizer_step_pre_hook(before_step)
    rc = main(sys.argv[1:])
    result: dict = {"rc": rc}
    for session in san_spade.active_sessions():
        cfg, generator = session.san.config, torch.Generator()
        generator.set_state(seen["generator"])
        layers = {}
        for name, layer in session.san.layers.items():
            size, kw = session.san.input_sizes[name], dict(stride=layer.stride, dilation=layer.dilation)
            subset_kw = dict(filter_ratio=cfg["filter_ratio"], gain=cfg["gain"], generator=generator)
            layers[name] = {
                "full": float(conv_constant(layer.weight, size, **kw)),
                "subset": float(conv_constant(layer.weight, size, **kw, **subset_kw)),
                "input_size": list(size),
                "padding_mode": layer.padding_mode,
                "sn": spectral_norm_style(layer),
            }
        others = {
            n: {"padding_mode": m.padding_mode, "sn": spectral_norm_style(m)}
            for n, m in session.netD.named_modules()
            if isinstance(m, nn.Conv2d) and n not in session.san.layers
        }
        G = seen["G"]
        change = max(float((a - b).abs().max()) for a, b in zip(seen["G_values"], G.parameters()))
        result.update(
            layers=layers,
            others=others,
            calls=session.san.calls,
            resumed=session.resumed,
            converted=session.converted_layers,
            G_sn_before=seen["G_sn"],
            G_sn_after=_sn_layers(G),
            G_change_in_last_D_step=change,
            G_in_san=any(m is layer for m in G.modules() for layer in session.san.layers.values()),
        )
    Path(os.environ["SAN_SPADE_TEST_RESULT"]).write_text(json.dumps(result))
    sys.exit(rc)


def run_spade(tmp: Path, san: list[str], *extra: str) -> tuple[dict, str]:
    out = tmp / f"result_{time.monotonic_ns()}.json"
    env = {**os.environ, "SAN_SPADE_TEST_RESULT": str(out), "OMP_NUM_THREADS": "1"}
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); from test_spade_real import _driver; _driver()"
    cmd = [sys.executable, "-c", code, "--spade-root", str(ROOT), *san, "--"]
    cmd += ["--name", "san", "--checkpoints_dir", str(tmp), *SPADE_ARGS, *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    print(f"SPADE run {san} {list(extra)}: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def check_D_and_G(result: dict) -> None:
    assert sorted(result["layers"]) == MIDDLE
    assert all(v["padding_mode"] == "circular" and v["sn"] is None for v in result["layers"].values())
    assert len(result["others"]) == 4 and all(
        v == {"padding_mode": "zeros", "sn": None} for v in result["others"].values()
    ), result["others"]
    assert result["G_sn_before"] and result["G_sn_after"] == result["G_sn_before"]
    assert result["G_change_in_last_D_step"] == 0.0 and not result["G_in_san"]


def test_real_spade_r1_constants_are_one(tmp_path):
    result, stdout = run_spade(tmp_path, ["--san-filter-ratio", "1"])
    check_D_and_G(result)
    assert result["calls"] == 2
    for name, layer in result["layers"].items():
        assert abs(layer["full"] - 1) < 1e-4, (name, layer)
    assert "SAN normalizes 6 D convs" in stdout and "using the single-process fallback" in stdout
    folder = tmp_path / "san"
    assert {"latest_net_D_san.pth", "1_net_D_san.pth", "san_opt.txt", "san_opt.json", "opt.txt"} <= {
        p.name for p in folder.iterdir()
    }
    assert json.loads((folder / "san_opt.json").read_text())["san_filter_ratio"] == 1.0


def test_real_spade_paper_settings_subset_times_gain_is_one(tmp_path):
    result, stdout = run_spade(tmp_path, [])
    check_D_and_G(result)
    for name, layer in result["layers"].items():
        assert abs(layer["subset"] - 1) < 1e-4, (name, layer)
    assert max(abs(v["full"] - 1) for v in result["layers"].values()) > 1e-3
    assert "r=0.25, g=1.3" in stdout and "betas=(0.5, 0.9)" in stdout


@pytest.mark.slow
def test_real_spade_continue_from_sn_then_from_san(tmp_path):
    import torch

    base, stdout = run_spade(tmp_path, ["--san-off"])
    assert base == {"rc": 0} and "SPADE runs unchanged" in stdout
    keys = set(torch.load(tmp_path / "san" / "latest_net_D.pth"))
    assert {f"{n}.weight_orig" for n in MIDDLE} <= keys
    converted, stdout = run_spade(tmp_path, ["--san-filter-ratio", "1"], "--continue_train")
    assert converted["converted"] == MIDDLE and not converted["resumed"] and converted["calls"] == 2
    assert "converted a spectral-norm D checkpoint for 6 layers" in stdout
    check_D_and_G(converted)
    assert all(abs(v["full"] - 1) < 1e-4 for v in converted["layers"].values())
    resumed, stdout = run_spade(tmp_path, ["--san-filter-ratio", "1"], "--continue_train")
    assert resumed["resumed"] and resumed["calls"] == 4 and resumed["converted"] == []
    assert "resumed SAN state" in stdout and "constant now (resumed)" in stdout
    assert all(abs(v["full"] - 1) < 1e-4 for v in resumed["layers"].values())
