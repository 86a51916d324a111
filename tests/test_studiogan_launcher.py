"""``python -m san_studiogan``: bad checkouts (CI) and, with $SAN_STUDIOGAN_ROOT, --dry-run and StudioGAN's main.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from san_studiogan import launcher
from standins.studiogan_fixtures import CONFIGS, ROOT, real_host


@pytest.fixture(scope="module")
def studiogan():
    yield from real_host()


def test_launcher_rejects_a_missing_checkout(tmp_path, capsys, monkeypatch):
    assert launcher.main(["--studiogan-root", str(tmp_path), "--", "-t"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("san_studiogan: error: expected a POSTECH-CVLab/PyTorch-StudioGAN")
    monkeypatch.delenv("SAN_STUDIOGAN_ROOT", raising=False)
    assert launcher.main(["--", "-t"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["san_studiogan: error: no StudioGAN checkout: pass --studiogan-root or set SAN_STUDIOGAN_ROOT"]


def test_launcher_runs_the_compat_step_before_importing_studiogan(tmp_path, monkeypatch):
    """The torchvision/NumPy fixes run before StudioGAN's modules are imported (they import torchvision)."""
    for name in ("main.py", "config.py", "loader.py", "models/model.py"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_text("")
    calls: list[str] = []
    monkeypatch.setattr(launcher, "ensure_torchvision_importable", lambda: calls.append("torchvision"))
    monkeypatch.setattr(launcher, "ensure_numpy_aliases", lambda: calls.append("numpy"))

    def import_studiogan(root):
        calls.append("import")
        raise RuntimeError("stop here")

    monkeypatch.setattr(launcher, "import_studiogan", import_studiogan)
    with pytest.raises(RuntimeError, match="stop here"):
        launcher.main(["--studiogan-root", str(tmp_path), "--dry-run", "--", "-cfg", "x.yaml"])
    assert calls == ["numpy", "torchvision", "import"]


def test_real_dry_run_in_a_fresh_process(studiogan):
    """``python -m san_studiogan ... --dry-run`` exactly as the README runs it: no fixes applied by the tests."""
    cfg = str(CONFIGS / "SNGAN-SAN.yaml")
    command = [sys.executable, "-m", "san_studiogan", "--studiogan-root", ROOT, "--dry-run", "--", "-cfg", cfg]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "11 layers" in run.stdout and "torchvision::nms" not in run.stderr


def test_real_dry_run_launcher(studiogan, capsys):
    cfg = str(CONFIGS / "SNGAN-SAN.yaml")
    assert launcher.main(["--studiogan-root", ROOT, "--dry-run", "--", "-t", "-cfg", cfg, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "11 layers" in out and "blocks.0.0.conv2d1" in out and "d_conv2d=san_conv2d" in out


def test_real_launcher_runs_main_py(studiogan, capsys):
    """The real run path, in-process: StudioGAN's src/main.py as __main__ (its --help; training needs CUDA)."""
    missing = [m for m in ("wandb", "h5py", "sklearn", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"StudioGAN's main.py imports {', '.join(missing)}")
    argv = list(sys.argv)
    with pytest.raises(SystemExit) as done:
        launcher.main(["--studiogan-root", ROOT, "--", "--help"])
    assert done.value.code == 0 and "--cfg_file" in capsys.readouterr().out and sys.argv == argv
