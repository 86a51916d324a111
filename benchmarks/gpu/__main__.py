"""``python -m benchmarks.gpu [--smoke] [--out DIR]``, ``python -m benchmarks.gpu diagnose [--smoke] [--out DIR]``
and ``python -m benchmarks.gpu prepare``.

The full run is designed for one H200 with 16 CPU cores: by default it ends within ``--budget-minutes 9.3``
(correctness ≤ 1.25 min, speed ≤ 1.25 min, quality with the rest, minus a reserve for the report), under the
device tool's 10-minute cap per command. ``--smoke`` runs the same pipeline on the CPU in ≤ 3 min (2 cores):
tiny widths, batches, budgets. At most 8 files go to ``--out`` (default ``$OUT`` when set, else
``benchmarks/out/gpu/``): ``gpu_report.md``, ``gpu_results.json``, ``quality.png``, ``speed.png``,
``pytest_gpu.log``, ``worker_logs.txt``.

``diagnose`` is issue 12's second run (:mod:`.diagnose`): the quality stage only, with the collapse-diagnosis
ablations instead of the SN-vs-SAN treatments (default ``$OUT``, else ``benchmarks/out/gpu_diagnose/``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import torch

from .. import _measure
from ..gan.checkpoint import atomic_write
from . import correctness, diagnose, prepare, quality, report, speed

REPO = Path(__file__).resolve().parents[2]
PROG = "python -m benchmarks.gpu"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


#: The device tool returns files of at most 16 MiB: larger results are written compact, then with their per-step
#: logs thinned, so the run's main record always comes back.
RESULTS_MAX_BYTES = 15 * 2**20
THINNED = ("san_constants", "loss")


def write_results(results: dict[str, Any], path: Path, limit: int = RESULTS_MAX_BYTES) -> None:
    """``results`` as JSON (indented while small, compact above ``limit / 2``, then every ``k``-th entry of each run's
    per-step logs :data:`THINNED`, ``k`` doubling until it fits, noted in ``meta.thinned``)."""
    text = json.dumps(results, indent=1)
    if len(text) > limit // 2:
        text = json.dumps(results, separators=(",", ":"))
    every = 2
    while len(text) > limit and every <= 2**20:
        thin = copy.deepcopy(results)
        for run in thin.get("quality", {}).get("results", []):
            for key in THINNED:
                if isinstance(run.get("history", {}).get(key), list):
                    run["history"][key] = run["history"][key][::every]
        thin["meta"]["thinned"] = f"per-step logs {', '.join(THINNED)} keep every {every}th entry (file size)"
        text, every = json.dumps(thin, separators=(",", ":")), every * 2
    atomic_write(path, lambda f: f.write(text.encode()))


def default_out(name: str = "gpu") -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "benchmarks" / "out" / name


def _treatments(text: str) -> list[str]:
    from ..gan.treatments import parse_treatment

    keys = [t for t in text.split(",") if t]
    for t in keys:
        try:
            parse_treatment(t)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    if not keys:
        raise argparse.ArgumentTypeError("expected at least one treatment")
    return keys


def parse_args(argv: list[str], prog: str = PROG) -> argparse.Namespace:
    p = _Parser(prog=prog, description=__doc__.split("\n")[0], allow_abbrev=False)  # --smok is a typo, not --smoke
    p.add_argument("--smoke", action="store_true", help="the whole pipeline on the CPU in ≤ 3 min (2 cores)")
    p.add_argument("--out", type=Path, help="output folder (default $OUT, else benchmarks/out/gpu)")
    p.add_argument("--data-dir", type=Path, default=prepare.DEFAULT_DEST, help="what `prepare` wrote")
    p.add_argument("--device", help="default cuda (cpu with --smoke)")
    p.add_argument("--budget-minutes", type=float, help="whole run, wall clock (default 9.3; smoke 2.7)")
    p.add_argument("--correctness-minutes", type=float, help="stage (a) cap (default 1.25)")
    p.add_argument("--speed-minutes", type=float, help="stage (b) cap (default 1.25)")
    p.add_argument("--quality-minutes", type=float, help="stage (c) cap (default: what the budget leaves)")
    p.add_argument("--seeds", default="0,1", help="quality seeds (≥ 2 for a spread)")
    p.add_argument("--treatments", type=_treatments, help="quality treatments (default "
                   f"{','.join(quality.DEFAULT_TREATMENTS)}; diagnose: {','.join(diagnose.TREATMENTS)})")  # fmt: skip
    p.add_argument("--procs", type=int, help="quality runs trained at once (default: all of them)")
    p.add_argument("--n-eval", type=int, help="samples per quality evaluation (default 5000; smoke 64)")
    p.add_argument("--eval-every", type=int, help="G steps between evaluations (default 1000; smoke 5)")
    p.add_argument("--gpu-tests", default=None, help="paths for `pytest -m gpu` (default tests; smoke: one file)")
    p.add_argument("--skip", default="", help="comma-separated stages to skip: correctness,speed,quality")
    p.add_argument("--commit", help="the commit to record where there is no git checkout (the device machine gets "
                   "the working tree without .git): pass `git rev-parse --short HEAD` of the tree sent")  # fmt: skip
    return p.parse_args(argv)


def commit_line(given: str | None) -> str:
    """The checkout's commit (``git``); where there is none (``unknown``), ``given`` with a note saying so."""
    found = _measure.git_commit()
    if not given:
        return found
    if found == "unknown":
        return f"{given} (from --commit: no git checkout here)"
    sha = found.removesuffix("-dirty")
    return found if sha.startswith(given) or given.startswith(sha) else f"{found} (--commit said {given})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        return quality.worker_main(argv[1:])
    if argv and argv[0] == "prepare":
        return prepare_main(argv[1:])
    mode = "diagnose" if argv and argv[0] == "diagnose" else "evidence"
    args = parse_args(argv[1:], f"{PROG} diagnose") if mode == "diagnose" else parse_args(argv)
    t0 = time.perf_counter()
    smoke = args.smoke
    if smoke:  # 2 shared cores: one thread each (two threads on busy cores run many times slower)
        torch.set_num_threads(1)
    device = torch.device(args.device or ("cpu" if smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"{PROG}: no CUDA device here; use --smoke (CPU) or --device cpu", file=sys.stderr)
        return 2
    try:
        data, clf_path, data_meta = prepare.load_prepared(args.data_dir)
    except FileNotFoundError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    out = args.out or default_out("gpu_diagnose" if mode == "diagnose" else "gpu")
    out.mkdir(parents=True, exist_ok=True)
    budget = 60 * (args.budget_minutes or (diagnose.SMOKE_MINUTES if smoke and mode == "diagnose" else
                                           2.7 if smoke else 9.3))  # fmt: skip
    end = t0 + budget
    results: dict[str, Any] = {"meta": {
        "command": f"{PROG} " + shlex.join(argv), "mode": mode, "commit": commit_line(args.commit),
        "torch": torch.__version__,
        "cuda": torch.version.cuda, "device": _measure.device_name(device), "smoke": smoke, "budget_s": budget,
        "cpu_cores": os.cpu_count(), "data": data_meta,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }}  # fmt: skip
    skip = set(filter(None, args.skip.split(","))) | (diagnose.SKIP if mode == "diagnose" else set())

    def record(stage: str, value: Any) -> None:
        results[stage] = value
        results["meta"]["elapsed_s"] = round(time.perf_counter() - t0, 1)
        write_results(results, out / "gpu_results.json")

    def left() -> float:
        return end - time.perf_counter()

    reserve = 15.0 if smoke else 25.0  # report + plots
    if "correctness" not in skip:
        cap = 60 * (args.correctness_minutes or (0.4 if smoke else 1.25))
        paths = shlex.split(args.gpu_tests) if args.gpu_tests else (["tests/test_benchmarks_gpu.py"] if smoke
                                                                    else ["tests"])  # fmt: skip
        print(f"{PROG}: (a) correctness, ≤ {cap:.0f} s", file=sys.stderr, flush=True)
        record("correctness", correctness.run(device, paths, min(cap, left()) - 10, out / "pytest_gpu.log"))
    if "speed" not in skip:
        cap = min(60 * (args.speed_minutes or (0.5 if smoke else 1.25)), left() - reserve)
        print(f"{PROG}: (b) speed, ≤ {cap:.0f} s", file=sys.stderr, flush=True)
        speed.run(device, smoke, cap, 1 if smoke else 15, lambda part: record("speed", part))
    if "quality" not in skip:
        cap = left() - reserve
        if args.quality_minutes:
            cap = min(cap, 60 * args.quality_minutes)
        print(f"{PROG}: (c) quality, ≤ {cap:.0f} s", file=sys.stderr, flush=True)
        run_quality(args, device, smoke, data, clf_path, data_meta, cap, lambda part: record("quality", part), mode)
    report.write(out, results)
    results["meta"]["elapsed_s"] = round(time.perf_counter() - t0, 1)
    write_results(results, out / "gpu_results.json")
    print(f"{PROG}: done in {results['meta']['elapsed_s']:.0f} s; {out}/gpu_report.md", file=sys.stderr)
    return 0


def run_quality(args, device, smoke, data, clf_path, data_meta, budget_s, record, mode="evidence") -> None:  # type: ignore[no-untyped-def]
    """Reference statistics once (all carried images), then the concurrent workers."""
    import numpy as np

    from ..gan.classifier import load_classifier
    from ..gan.collapse import pixel_std
    from ..gan.metrics import FeatureNet, reference_stats

    t0 = time.perf_counter()  # the reference statistics below come out of the stage's budget
    seeds = [int(s) for s in args.seeds.split(",")]
    keys = args.treatments or (diagnose.TREATMENTS if mode == "diagnose" else None)
    procs = args.procs or quality.default_procs(quality.treatments(keys)[0], seeds)
    q = quality.QualityConfig(seeds=seeds, procs=procs, treatments=keys)
    if smoke:
        q = quality.QualityConfig(seeds=seeds, batch=8, g_ch=64, d_ch=16, eval_every=5, n_eval=64, eval_batch=64,
                                  max_steps=10, procs=procs, log_every=1, treatments=keys)  # fmt: skip
    q.n_eval, q.eval_every = args.n_eval or q.n_eval, args.eval_every or q.eval_every
    clf = data_meta["classifier"]
    names = {"metric_key": f"clf-{clf}", "fid_name": f"classifier-FID ({clf})", "is_name": f"classifier-IS ({clf})"}
    work = Path(tempfile.mkdtemp(prefix="san_gpu_quality_"))
    try:
        model = load_classifier(clf_path, "resnet20").to(device)
        net = FeatureNet(names["metric_key"], names["fid_name"], names["is_name"], model.features, model)
        ref_n = min(len(data), 1000) if smoke else len(data)  # smoke: the classifier on the CPU is the slow part
        ref = reference_stats(net, data.x, data.name, ref_n, work, device, 500)
        ref_path = work / "ref.npz"
        np.savez(ref_path, **ref)
        del model, net
        if device.type == "cuda":
            torch.cuda.empty_cache()
        real_std = pixel_std(data.x[:10_000].float() / 255)
        quality.run(device, args.data_dir, work, q, budget_s - (time.perf_counter() - t0), names, ref_path,
                    lambda part: record({**part, "real_pixel_std": real_std}),
                    poll_s=1.0 if smoke else 5.0)  # fmt: skip
    except Exception as err:  # recorded; the report is still written
        record({"status": f"error: {type(err).__name__}: {err}"})


def prepare_main(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} prepare", description=prepare.__doc__.split("\n")[0])
    p.add_argument("--data", help="CIFAR-10 source as for side_by_side (default the shared tarball), or fake:N")
    p.add_argument("--dest", type=Path, default=prepare.DEFAULT_DEST)
    p.add_argument("--images", type=int, default=prepare.DEFAULT_IMAGES, help="training images carried (balanced)")
    p.add_argument("--classifier", type=Path, help="resnet20 checkpoint (default the shared one)")
    p.add_argument("--random-classifier", action="store_true", help="an untrained resnet20: tests/CI only")
    args = p.parse_args(argv)
    try:
        meta = prepare.prepare(args.data, args.dest, args.images, args.classifier, args.random_classifier)
    except (FileNotFoundError, ValueError) as err:
        print(f"{PROG} prepare: {err}", file=sys.stderr)
        return 2
    tree = "" if meta["tree_mib"] is None else f" (+ the repository's {meta['tree_mib']} MiB that travel with it)"
    print(f"{PROG} prepare: {args.dest}: {meta['images']} images from {meta['source']}, classifier "
          f"{meta['classifier']}, {meta['total_mib']} MiB{tree}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
