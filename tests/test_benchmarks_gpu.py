"""``python -m benchmarks.gpu``: the packed data round-trips exactly, the CUDA checks can fail, and the whole
pipeline (prepare → correctness → speed → quality → report) runs as ``--smoke`` on the CPU, importing nothing the
GPU machine lacks. The smoke uses SYNTHETIC images (``fake:N``) and an UNTRAINED classifier: it checks the
pipeline, not any number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import san_core
from benchmarks import _critics
from benchmarks.gpu import correctness, prepare

REPO = Path(__file__).resolve().parents[1]
# What the device machine has besides the standard library (and what those packages import themselves); pytest
# is optional there (stage (a) records "not installed" without it) and allowed so its path is exercised here.
ALLOWED = {"torch", "numpy", "scipy", "matplotlib", "tqdm", "san_core", "benchmarks", "pytest"}


def test_packed_images_round_trip_exactly_and_subset_is_balanced(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (30, 3, 32, 32), generator=gen, dtype=torch.uint8).numpy()
    x[:, :, :, 1:] = x[:, :, :, :1]  # flat rows: the delta coding must still be exact (wrap-around mod 256)
    x[0, 0, 0, :] = np.arange(32) * 9 % 256
    y = np.arange(30) % 10
    back_x, back_y = prepare.decode(prepare.encode(x, y), 30, (3, 32, 32))
    assert torch.equal(back_x, torch.from_numpy(x)) and back_y.tolist() == y.tolist()
    labels = torch.tensor([c for c in range(10) for _ in range(7)])
    idx = prepare.balanced_subset(labels, 30)
    assert torch.bincount(labels[idx]).tolist() == [3] * 10 and idx.tolist() == sorted(idx.tolist())
    with pytest.raises(FileNotFoundError, match=r"benchmarks\.gpu prepare"):
        prepare.load_prepared(tmp_path / "missing")


def test_constants_check_catches_a_wrong_constant(monkeypatch):
    monkeypatch.setattr(_critics, "CRITICS", {"sngan_cnn": _critics.sngan_cnn})
    ok = correctness.constants_check(torch.device("cpu"))
    assert ok["ok"] and ok["max_rel"] < 1e-5 and len(ok["layers"]) == 8 + 2
    real = san_core.conv_constant
    monkeypatch.setattr(san_core, "conv_constant", lambda *a, **k: real(*a, **k) * 1.001)
    bad = correctness.constants_check(torch.device("cpu"))
    assert not bad["ok"] and bad["max_rel"] == pytest.approx(1e-3, rel=1e-2)


def test_gpu_tests_import_the_adapters_from_the_working_tree(tmp_path, monkeypatch):
    """The device machine has the working tree but nothing installed from it: ``pytest -m gpu`` must still import
    the adapters there (else every module importing one fails to collect and stage (a) reads FAILED)."""
    probe = "import importlib.util as u; s = u.find_spec('san_studiogan'); print(s.origin if s else None)"
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def origin(env: dict) -> str:  # -S: no site-packages, so this checkout's editable install is invisible
        cmd = [sys.executable, "-S", "-c", probe]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()

    assert origin(bare) == "None"
    assert Path(origin(correctness.pytest_env())) == REPO / "adapters" / "san_studiogan" / "__init__.py"
    seen = {}

    def fake_run(cmd, **kwargs):
        seen.update(kwargs)
        return subprocess.CompletedProcess(cmd, 0, "1 passed in 0.1s\n", "")

    monkeypatch.setattr(correctness.subprocess, "run", fake_run)
    res = correctness.run_pytest(["tests"], 30.0, tmp_path / "log.txt")
    assert res["status"] == "passed"
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[:2] == [str(REPO), str(REPO / "adapters")]


def test_brute_force_matches_lemma_1_on_a_known_kernel():
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 2.0  # a centred delta: |DFT| = 2 everywhere
    assert correctness.brute_conv(w, (4, 4)) == pytest.approx(2.0)
    w = torch.ones(1, 1, 3, 3)  # DC term 9 on any grid ≥ 3 (taps wrap onto a 2×2 grid: still 9 at ω = 0)
    assert correctness.brute_conv(w, (2, 2)) == pytest.approx(9.0)


@pytest.mark.gpu
def test_cuda_constants_and_sync_free_normalize():
    res = correctness.constants_check(torch.device("cuda"))
    assert res["ok"], max(res["layers"], key=lambda r: r["rel"])
    sync = correctness.sync_free_check(torch.device("cuda"))
    assert not sync["status"].startswith("FAILED"), sync
    rep = correctness.reparam_check(torch.device("cuda"))
    assert rep["status"] in ("passed",) or rep["status"].startswith("not run"), rep


BLOCKER = """
import importlib.abc, sys, os
ROOTS = [os.path.join({repo!r}, d) + os.sep for d in ("benchmarks", "san_core")]
ALLOWED = {allowed!r} | set(sys.stdlib_module_names)
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ALLOWED or name in sys.modules:
            return None
        f = sys._getframe(1)
        while f is not None and ("importlib" in f.f_code.co_filename or f.f_code.co_filename.startswith("<")):
            f = f.f_back
        if f is not None and any(f.f_code.co_filename.startswith(r) for r in ROOTS):
            raise ImportError(f"GPU machine has no {{top!r}} (imported by {{f.f_code.co_filename}})")
        return None
sys.meta_path.insert(0, Blocker())
"""


def _prepared(tmp_path, images: int):
    """``(data dir, out dir, env)``: synthetic ``.gpu_data`` prepared, imports limited to the GPU machine's packages."""
    data, out, site = tmp_path / "gpu_data", tmp_path / "out", tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER.format(repo=str(REPO), allowed=ALLOWED)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "OUT": str(out)}
    prep = [sys.executable, "-m", "benchmarks.gpu", "prepare", "--data", f"fake:{images}", "--random-classifier",
            "--dest", str(data)]  # fmt: skip
    assert subprocess.run(prep, cwd=REPO, capture_output=True, text=True, env=env, timeout=300).returncode == 0
    return data, out, env


def test_smoke_runs_the_whole_pipeline_with_only_the_gpu_machines_packages(tmp_path):
    data, out, env = _prepared(tmp_path, 200)
    meta = json.loads((data / "data.json").read_text())
    assert meta["synthetic"] and "TEST ONLY" in meta["classifier"] and 150 < meta["images"] <= 200
    # The CLI's smoke, with a shorter wall-clock budget than its default 2.7 min to spare the test suite.
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--smoke", "--data-dir", str(data), "--budget-minutes", "2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files), files
    assert {"gpu_report.md", "gpu_results.json", "quality.png", "pytest_gpu.log"} <= set(files)
    res = json.loads((out / "gpu_results.json").read_text())
    assert res["meta"]["elapsed_s"] <= 2 * 60 + 20  # time-boxed
    assert res["correctness"]["constants"]["ok"] and "no GPU machine" not in proc.stderr
    assert "nothing ran" in res["correctness"]["pytest_gpu"]["status"]  # the gpu test is skipped on CPU
    assert res["speed"]["critics"]["sngan_cnn"]["status"] == "ok"
    q = res["quality"]
    keys = {r["treatment"] for r in q["results"]}
    assert {"sn", "sn-5d", "san"} <= keys and all(len(r["history"]["eval"]) >= 1 for r in q["results"])
    assert all("top_class" in r["history"]["eval"][-1] for r in q["results"])
    report = (out / "gpu_report.md").read_text()
    assert "SMOKE" in report and "SYNTHETIC DATA, UNTRAINED CLASSIFIER" in report and "## What this run shows" in report
    assert "At equal G steps" in report and "(report of this stage failed" not in report
    assert "Traceback" not in proc.stderr


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--smoke", "--data-dir", str(tmp_path / "no")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "benchmarks.gpu prepare" in proc.stderr and len(proc.stderr.splitlines()) == 1
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--smok"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "--smok" in proc.stderr


def test_diagnose_smoke_runs_the_ablations_with_only_the_gpu_machines_packages(tmp_path):
    """``python -m benchmarks.gpu diagnose --smoke``: issue 12's second run, the quality stage only, with the
    diagnosis ablations and their mechanism table (one seed here to spare the suite; the CLI default is two)."""
    from benchmarks.gpu import diagnose

    data, out, env = _prepared(tmp_path, 120)
    cmd = [sys.executable, "-m", "benchmarks.gpu", "diagnose", "--smoke", "--data-dir", str(data), "--seeds", "0",
           "--budget-minutes", "1.5"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files), files
    assert {"gpu_report.md", "gpu_results.json", "quality.png"} <= set(files) and "pytest_gpu.log" not in files
    res = json.loads((out / "gpu_results.json").read_text())
    assert res["meta"]["mode"] == "diagnose" and res["meta"]["elapsed_s"] <= 1.5 * 60 + 20
    assert "correctness" not in res and "speed" not in res
    q = res["quality"]
    assert q["treatments"] == diagnose.TREATMENTS and q["config"]["procs"] == len(diagnose.TREATMENTS)
    assert {r["treatment"] for r in q["results"]} == set(diagnose.TREATMENTS)
    for r in q["results"]:
        last = r["history"]["eval"][-1]
        assert last["step"] > 0 and {"sat_real", "sat_fake", "g_grad", "grad_align"} <= set(last), last
    scaled = next(r for r in q["results"] if r["treatment"] == "san-scaled")
    assert 0 < scaled["history"]["calibration"]["alpha"] < 1  # SAN's output is larger than SN's at init
    report = (out / "gpu_report.md").read_text()
    assert report.startswith("# GPU diagnosis run") and "SMOKE" in report and "SYNTHETIC DATA" in report
    assert "#### Mechanism diagnostics (issue 12)" in report and "## (a) CUDA correctness" not in report
    assert "Traceback" not in proc.stderr


def test_diagnose_cli_rejects_an_unknown_treatment_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "diagnose", "--smoke", "--treatments", "sn,sam"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "'sam'" in proc.stderr
    assert proc.stderr.startswith("python -m benchmarks.gpu diagnose: error:")


def test_commit_is_recorded_where_the_device_has_no_git_checkout(monkeypatch):
    """The device machine gets the working tree without ``.git``: ``--commit`` supplies the commit there, and a
    checkout's own commit wins (a disagreeing ``--commit`` is shown beside it, not instead of it)."""
    from benchmarks import _measure
    from benchmarks.gpu.__main__ import commit_line

    monkeypatch.setattr(_measure, "git_commit", lambda: "unknown")
    assert commit_line(None) == "unknown"
    assert commit_line("abc1234") == "abc1234 (from --commit: no git checkout here)"
    monkeypatch.setattr(_measure, "git_commit", lambda: "abc1234-dirty")
    assert commit_line(None) == commit_line("abc1234") == commit_line("abc12345678") == "abc1234-dirty"
    assert commit_line("fff0000") == "abc1234-dirty (--commit said fff0000)"
