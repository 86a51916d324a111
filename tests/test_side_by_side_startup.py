"""The README's main job starts on a fresh clone: committed reference results never block it, a run's identity
is the data's content (not its path), stale runs are reported before heavy work and ``--fresh`` clears them, and
a misspelled treatment is a one-line argparse error. Runs on synthetic data (``--data fake:N`` / a tiny JPEG
tarball) and an untrained classifier (``--metric random``), so it needs nothing from ``../shared/data``."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks import side_by_side
from benchmarks.gan.data import CLASSES, data_name

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--preset", "test", "--metric", "random", "--setups", "cnn", "--threads", "1"]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha1(f.read_bytes()).hexdigest() for f in folder.rglob("*") if f.is_file()
    }


def _fresh_clone(dest: Path) -> Path:
    """The pieces of the repository the main job imports, as a fresh clone has them (no outputs, no caches)."""
    ignore = shutil.ignore_patterns("__pycache__", "out", "*.pyc")
    for part in ("benchmarks", "san_core"):
        shutil.copytree(REPO / part, dest / part, ignore=ignore)
    return dest


def test_fresh_clone_committed_results_do_not_block(tmp_path):
    clone = _fresh_clone(tmp_path / "clone")
    committed = clone / "benchmarks" / "results" / "side_by_side_cpu-quick"
    # A committed reference run made elsewhere (another config hash): what blocked the README's command before.
    fake_ref = committed / "runs" / "cnn" / "sn" / "seed0"
    fake_ref.mkdir(parents=True, exist_ok=True)
    (fake_ref / "result.json").write_text(json.dumps({"config_hash": "ad9467c8b1f8"}))
    before = _digest(committed)
    cmd = [sys.executable, "-m", "benchmarks.side_by_side", "--preset", "cpu-quick", "--data", "fake:64",
           "--metric", "random", "--setups", "cnn", "--treatments", "sn,san", "--steps", "1", "--n-eval", "16",
           "--threads", "1"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = clone / "benchmarks" / "out" / "side_by_side_cpu-quick"
    assert (out / "side_by_side.md").is_file() and _digest(committed) == before  # reference results untouched
    assert "What this run shows:" in proc.stderr and "ETA" in proc.stderr
    assert "[run 2/2," in proc.stderr


def _tarball(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for label, name in enumerate(CLASSES):
            for i in range(3):
                buf = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), 20 * label + i, np.uint8)).save(buf, format="JPEG")
                info = tarfile.TarInfo(f"train/{name}/{i:04d}.jpg")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_identity_is_data_content_not_path_and_fresh_clears_stale(tmp_path, capsys):
    pytest.importorskip("PIL")
    a = _tarball(tmp_path / "machine_a" / "cifar10_jpeg.tar.gz")
    b = tmp_path / "elsewhere" / "deeper" / "cifar10_jpeg.tar.gz"
    b.parent.mkdir(parents=True)
    shutil.copy(a, b)
    assert data_name(a) == data_name(b) and data_name(a).startswith("cifar10-cifar10_jpeg-")
    other = _tarball(tmp_path / "other" / "cifar10_jpeg.tar.gz")
    with open(other, "ab") as f:  # same name, different bytes
        f.write(b"\0")
    assert data_name(other) != data_name(a)

    out = tmp_path / "out"
    args = [*QUICK, "--treatments", "sn,san", "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert side_by_side.main([*args, "--data", str(a)]) == 0
    capsys.readouterr()
    # The same content at another absolute path (another machine's checkout): both runs reused, nothing retrained.
    assert side_by_side.main([*args, "--data", str(b), "--cache", str(tmp_path / "cache2")]) == 0
    meta = json.loads((out / "side_by_side.json").read_text())["meta"]
    assert len(meta["invocations"]) == 1 and meta["invocations"][0]["trained"] == 2  # the reuse adds no line
    capsys.readouterr()

    # Other data (or settings) → stale: one message naming every stale run and --fresh, exit 2, before data loads.
    assert side_by_side.main([*args, "--data", "fake:40"]) == 2
    err = capsys.readouterr().err
    assert "2 run(s) made with another config" in err and "cnn/sn/seed0, cnn/san/seed0" in err and "--fresh" in err
    assert err.count("\n") == 1
    assert side_by_side.main([*args, "--data", "fake:40", "--fresh"]) == 0
    err = capsys.readouterr().err
    assert "--fresh: discarded 2 run(s)" in err
    meta = json.loads((out / "side_by_side.json").read_text())["meta"]
    # The first invocation's runs were discarded: the header lists only the invocation whose runs are shown.
    assert len(meta["invocations"]) == 1 and "fake:40" in meta["invocations"][0]["command"]
    assert meta["data"] == "fake40/train"


def test_misspelled_treatment_is_a_one_line_argparse_error():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.side_by_side", "--treatments", "sn,sann"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "argument --treatments" in lines[0] and "'sann'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
