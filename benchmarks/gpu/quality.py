"""Stage (c) of the GPU run: does SAN beat spectral norm on the SNGAN standard CNN (CIFAR-10, batch 64, Adam 2e-4,
β = (0.5, 0.9), hinge loss)?

Treatments SN (1 D step), SN (5 D steps), SAN rescale, SAN reparametrized (skipped with a note when ``san_core.SAN``
has no ``form=``) and SAN scaled to SN's output at init (1 D step each for SAN), ≥ 2 seeds each, all trained **at
the same time as separate processes** on the one GPU: each run is small (launch-bound at batch 64), so one process
per run keeps the GPU busy while every process's CPU side launches kernels (16 cores for ≤ 12 processes). Each
worker is :func:`benchmarks.gan.train.train_run` with a wall-clock deadline: it trains until then (or
``max_steps``), evaluates every ``eval_every`` G steps and once more at the deadline on ``n_eval`` samples
(classifier-FID/IS of the resnet20 + collapse diagnostics), and rewrites its partial result after each evaluation.
The parent starts the workers, waits until the budget is spent, stops any straggler, and reads what each one wrote:
a crashed or killed worker loses only its own unfinished evaluations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..gan.checkpoint import atomic_json
from ..gan.treatments import supports_form

REPO = Path(__file__).resolve().parents[2]


@dataclass
class QualityConfig:
    seeds: list[int]
    batch: int = 64
    g_ch: int = 512
    d_ch: int = 64
    eval_every: int = 1000
    n_eval: int = 5000
    eval_batch: int = 500
    max_steps: int = 100_000
    procs: int = 8
    log_every: int = 50
    treatments: Optional[list[str]] = None  # default: :func:`treatments`


#: SN (1 and 5 D steps), SAN, SAN reparametrized, and SAN with its output scaled to SN's at init: the CPU
#: diagnosis's lead explanation (scale at init → hinge saturation), tested in the same call because a session's 15
#: device minutes rarely leave room for the second run (``diagnose``).
DEFAULT_TREATMENTS = ("sn", "sn:5", "san", "san-reparam", "san-scaled")


MAX_PROCS = 12  # 16 cores: at least one each, and the parent


def default_procs(treatments: list[str], seeds: list[int]) -> int:
    """Workers at once (both the evidence and the ``diagnose`` run): every run (they are launch-bound at batch 64, so
    concurrent processes fill the GPU), at most :data:`MAX_PROCS`."""
    return max(1, min(len(treatments) * len(seeds), MAX_PROCS))


def treatments(wanted: Optional[list[str]] = None) -> tuple[list[str], str]:
    """``wanted`` (default :data:`DEFAULT_TREATMENTS`) less the reparametrized form where
    ``san_core.SAN`` has no ``form=``, and a note saying so."""
    keys = wanted or list(DEFAULT_TREATMENTS)
    if supports_form():
        return list(keys), ""
    kept = [k for k in keys if not k.startswith("san-reparam")]
    return kept, "" if kept == keys else "SAN reparametrized skipped: this san_core.SAN has no form= option"


def worker_main(argv: list[str]) -> int:
    """``python -m benchmarks.gpu _worker CONFIG.json``: one run, results to the config's ``result`` path."""
    cfg = json.loads(Path(argv[0]).read_text())
    deadline = time.perf_counter() + (cfg["deadline_epoch"] - time.time())  # absolute: start-up time counts too
    torch.set_num_threads(cfg["threads"])
    torch.backends.cudnn.benchmark = True
    from ..gan.classifier import load_classifier
    from ..gan.metrics import FeatureNet
    from ..gan.setups import get_setup
    from ..gan.train import RunSpec, train_run
    from ..gan.treatments import parse_treatment
    from .prepare import load_prepared

    device = torch.device(cfg["device"])
    data, clf_path, _ = load_prepared(Path(cfg["data_dir"]))
    if device.type == "cuda":
        from ..gan.data import ImageSet

        data = ImageSet(data.x.to(device), data.y.to(device), data.name)
    model = load_classifier(clf_path, "resnet20").to(device)
    net = FeatureNet(cfg["metric_key"], cfg["fid_name"], cfg["is_name"], model.features, model)
    with open(cfg["ref"], "rb") as f:
        import numpy as np

        ref = dict(np.load(f))
    q = cfg["quality"]
    spec = RunSpec(get_setup("cnn", q["g_ch"], q["d_ch"]), parse_treatment(cfg["treatment"]), cfg["seed"],
                   q["max_steps"], q["batch"], q["eval_every"], q["n_eval"], q["eval_batch"], ckpt_every=10**9,
                   log_every=q["log_every"])  # fmt: skip
    result_path = Path(cfg["result"])

    def save(partial: dict[str, Any]) -> None:
        atomic_json({**partial, "worker_left_s": round(deadline - time.perf_counter(), 1)}, result_path)

    final = train_run(spec, Path(cfg["work"]), data, net, ref, device, deadline=deadline - cfg["eval_reserve_s"],
                      on_eval=save)  # fmt: skip
    save(final)
    return 0


def run(
    device: torch.device,
    data_dir: Path,
    work: Path,
    q: QualityConfig,
    budget_s: float,
    net_names: dict[str, str],
    ref_path: Path,
    record: Callable[[dict[str, Any]], None],
    poll_s: float = 5.0,
) -> dict[str, Any]:
    """Start the workers (at most ``q.procs`` at once), wait ≤ ``budget_s``, collect their results."""
    keys, note = treatments(q.treatments)
    jobs = [(t, s) for s in q.seeds for t in keys]  # seed-major: a short budget still covers every treatment
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    end = start + budget_s
    threads = max(1, (os.cpu_count() or 2) // max(1, min(q.procs, len(jobs))))
    # Time each worker keeps for its last evaluation (n_eval samples + features), scaled with the sample count.
    reserve = 8.0 + q.n_eval / 500 if device.type == "cuda" else 4.0 + q.n_eval / 100
    running: list[tuple[subprocess.Popen, Any, str]] = []
    pending = list(jobs)
    out: dict[str, Any] = {"treatments": keys, "note": note, "config": q.__dict__, "workers": {}}
    while pending or running:
        now = time.perf_counter()
        while pending and len(running) < q.procs and end - now > reserve + 10:
            t, seed = pending.pop(0)
            name = f"{t.replace(':', '-')}_seed{seed}"
            cfg = {"device": str(device), "data_dir": str(data_dir), "work": str(work / "runs_root"),
                   "treatment": t, "seed": seed, "deadline_epoch": time.time() + (end - now) - 3, "threads": threads,
                   "ref": str(ref_path),
                   "result": str(work / f"{name}.json"), "quality": q.__dict__, "eval_reserve_s": reserve,
                   **net_names}  # fmt: skip
            (work / f"{name}.cfg.json").write_text(json.dumps(cfg))
            log = open(work / f"{name}.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.gpu", "_worker", str(work / f"{name}.cfg.json")],
                                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            running.append((proc, log, name))
        for proc, log, name in list(running):
            if proc.poll() is not None:
                log.close()
                running.remove((proc, log, name))
                out["workers"][name] = {"rc": proc.returncode}
        if pending and not running and end - time.perf_counter() <= reserve + 10:
            for t, seed in pending:
                out["workers"][f"{t.replace(':', '-')}_seed{seed}"] = {"rc": None, "status": "not started: no time"}
            pending = []
        if time.perf_counter() > end:  # a worker past its deadline: stop it (its last evaluation stays)
            for proc, log, name in running:
                proc.kill()
                proc.wait()
                log.close()
                out["workers"][name] = {"rc": proc.returncode, "status": "killed at the quality deadline"}
            running = []
        out["results"] = collect(work, jobs)
        record(out)
        if running or pending:
            time.sleep(poll_s)
    out["results"] = collect(work, jobs)
    out["worker_log_tails"] = {
        f"{t.replace(':', '-')}_seed{s}": _tail(work / f"{t.replace(':', '-')}_seed{s}.log") for t, s in jobs
    }
    out["seconds"] = round(time.perf_counter() - start, 1)
    record(out)
    return out


def collect(work: Path, jobs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    results = []
    for t, seed in jobs:
        path = work / f"{t.replace(':', '-')}_seed{seed}.json"
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return results


def _tail(path: Path, lines: int = 6) -> Optional[str]:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return None
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])
