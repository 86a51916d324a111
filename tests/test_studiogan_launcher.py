"""``python -m san_studiogan``: bad checkouts (CI) and, with $SAN_STUDIOGAN_ROOT, --dry-run and StudioGAN's main.py."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from san_studiogan import launcher
from standins.studiogan_fixtures import CONFIGS, ROOT, real_host


@pytest.fixture(scope="module")
def studiogan():
    yield from real_host()


def test_launcher_rejects_a_missing_checkout(tmp_path, capsys, monkeypatch):
    assert launcher.main(["--studiogan-root", str(tmp_path), "--", "-t"]) == 2
    assert "expected a POSTECH-CVLab/PyTorch-StudioGAN checkout" in capsys.readouterr().err
    monkeypatch.delenv("SAN_STUDIOGAN_ROOT", raising=False)
    assert launcher.main(["--", "-t"]) == 2
    assert "pass --studiogan-root or set SAN_STUDIOGAN_ROOT" in capsys.readouterr().err


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
