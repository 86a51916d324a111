"""Side-by-side GAN training: every critic treatment on identical data, seeds, models, losses and step budgets.

    python -m benchmarks.side_by_side --preset cpu-quick          # ≤ 15 min on 2 CPU cores, one seed
    python -m benchmarks.side_by_side --preset gpu --device cuda  # the paper's setups, 3 seeds

Writes ``side_by_side.md`` / ``.json``, ``scores_<setup>.png`` (metric curves and collapse diagnostics) and
``san_constants_<setup>.png`` / ``weight_constants_<setup>.png`` to ``--out`` (default
``benchmarks/out/side_by_side_<preset>/``, ignored by git; the committed reference results in
``benchmarks/results/`` are never written unless named with ``--out``) and one directory per run under ``runs/``
(``checkpoint.pt`` while unfinished, ``result.json`` when done). A run's identity is its config: setup,
treatment, seed, budget, metric and the data's *content* hash (not its path). Rerunning the same command skips
finished runs and resumes unfinished ones; runs of another config there are reported before any heavy work,
and ``--fresh`` discards them. Scores are named by their feature network:
``classifier-FID (resnet20)`` by default (a CIFAR-10 classifier's features, comparable only between runs
made here), ``FID (Inception-v3)`` with ``--metric inception --inception-weights PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from . import _measure
from .gan import diagnosis, plots, report, runlog, summary
from .gan.checkpoint import atomic_json
from .gan.classifier import accuracy
from .gan.collapse import pixel_std
from .gan.data import DEFAULT_CACHE, SHARED_DATA, DataMissing, ImageSet, data_name, load_cifar10
from .gan.feature_nets import METRICS, make_feature_net
from .gan.inception import InceptionMissing
from .gan.metrics import FeatureNet, reference_stats
from .gan.presets import PRESETS, Preset
from .gan.setups import get_setup
from .gan.train import RunSpec, train_run
from .gan.treatments import BASE, parse_treatment

RESULTS = Path(__file__).resolve().parent / "results"
OUT = Path(__file__).resolve().parent / "out"


PROG = "python -m benchmarks.side_by_side"


class _OneLineParser(argparse.ArgumentParser):
    """Errors as one line (``prog: error: …``, exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _treatment_list(text: str) -> str:
    for t in text.split(","):
        try:
            parse_treatment(t)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu-quick")
    p.add_argument("--data", help="cifar10_jpeg.tar.gz, a torchvision CIFAR-10 root, an image folder, or fake[:N]")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="decoded data and reference statistics")
    p.add_argument(
        "--out", type=Path, help="results and run directories (default benchmarks/out/side_by_side_<preset>)"
    )
    p.add_argument("--fresh", action="store_true", help="discard runs of another config under --out, train anew")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--metric", choices=METRICS, default="classifier")
    p.add_argument("--classifier", type=Path, help="CIFAR-10 ResNet checkpoint (default resnet20 in the shared data)")
    p.add_argument("--inception-weights", type=Path, help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--setups", help="comma-separated subset of the preset's setups (cnn,resnet,biggan)")
    p.add_argument(
        "--treatments",
        type=_treatment_list,
        help=f"comma-separated treatments replacing the preset's, from {sorted(BASE)}, e.g. sn,san,sn:5",
    )
    p.add_argument("--seeds", help="comma-separated seeds replacing the preset's")
    p.add_argument("--steps", type=int, help="generator steps per run, replacing the preset's")
    p.add_argument("--n-eval", type=int, help="samples per evaluation, replacing the preset's (e.g. for checks)")
    p.add_argument("--eval-every", type=_positive, help="G steps between evaluations, replacing the preset's")
    p.add_argument("--max-steps", type=int, help="stop each run after this many steps in this invocation (resumable)")
    p.add_argument("--threads", default="auto", help="torch CPU threads; auto = one per idle core (load average)")
    p.add_argument("--keep-models", action="store_true", help="keep final G/D weights (final_models.pt) per run")
    return p.parse_args(argv)


def build_specs(preset: Preset, args: argparse.Namespace) -> list[RunSpec]:
    wanted = args.setups.split(",") if args.setups else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else preset.seeds
    specs = []
    for seed in seeds:  # seed-major, so a partial run (e.g. on a GPU lent for a while) covers every setup first
        for b in preset.budgets:
            if wanted is not None and b.setup not in wanted:
                continue
            setup = get_setup(b.setup, b.g_ch, b.d_ch)
            steps = args.steps or b.steps
            every = min(args.eval_every or b.eval_every, steps)
            for t in args.treatments.split(",") if args.treatments else b.treatments:
                specs.append(RunSpec(setup, parse_treatment(t), seed, steps, b.batch, every, args.n_eval or b.n_eval,
                                     preset.eval_batch, b.ckpt_every, b.log_every, preset.is_splits))  # fmt: skip
    if wanted is not None and not specs:
        raise SystemExit(f"--setups {args.setups}: none of them is in preset {preset.name!r}")
    return specs


def _busy_cores(seconds: float = 0.5) -> float:
    """Cores kept busy by other processes right now: ``/proc/stat`` sampled over ``seconds`` (Linux), else the
    1-minute load average."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
        return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def _measure_threads(spec: str) -> int:
    """``auto``: one thread per core not busy with other processes (at least 1), so a shared machine is not
    oversubscribed (two threads on cores that other processes hold run many times slower than one)."""
    if spec != "auto":
        return max(1, int(spec))
    idle = (os.cpu_count() or 1) - _busy_cores()
    return max(1, min(torch.get_num_threads(), round(idle)))


def classifier_check(net: FeatureNet, device: torch.device) -> dict[str, Any] | None:
    """Top-1 accuracy of the scoring classifier on the byte-exact CIFAR-10 test subset, when it is there."""
    path = SHARED_DATA / "cifar10" / "cifar10_exact_subset.npz"
    if net.module is None or not net.key.startswith("clf-") or not path.is_file():
        return None
    with np.load(path) as f:
        x, y = torch.from_numpy(f["x_test"]), torch.from_numpy(f["y_test"]).long()
    acc = accuracy(net.module.to(device), x.to(device), y.to(device))  # type: ignore[arg-type]
    return {"images": len(y), "source": path.name + " x_test", "top1": acc}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(_measure_threads(args.threads))
    load_before = _measure.load_average()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    preset = PRESETS[args.preset]
    out = args.out or OUT / f"side_by_side_{args.preset}"
    device = torch.device(args.device)
    specs = build_specs(preset, args)
    try:  # cheap first: the data's content hash and the feature net, so stale runs are found before heavy work
        name = data_name(args.data, "train")
        net = make_feature_net(args.metric, args.classifier, args.inception_weights).to(device)
    except (DataMissing, InceptionMissing, FileNotFoundError) as err:
        print(f"side_by_side: {err}", file=sys.stderr)
        return 2
    if not runlog.handle_stale(runlog.stale_runs(specs, out, net.key, name), out, args.fresh, "side_by_side"):
        return 2
    print(f"side_by_side: {len(specs)} runs → {out}", file=sys.stderr)
    data = load_cifar10(args.data, "train", args.cache)
    if device.type == "cuda":  # 150 MB of uint8: keep it on the GPU, batches are gathered there
        data = ImageSet(data.x.to(device), data.y.to(device), data.name)
    t_data = time.perf_counter() - t_start
    check = classifier_check(net, device)
    if check is not None:
        print(f"{net.fid_name}: classifier top-1 {100 * check['top1']:.2f} % on {check['source']}", file=sys.stderr)
    ref = reference_stats(net, data.x, data.name, preset.ref_samples, args.cache, device, preset.eval_batch)
    real_std = pixel_std(data.x[: min(len(data), 10_000)].float() / 255)
    t_ref = time.perf_counter() - t_start - t_data
    results, counts, trained = [], {"trained": 0, "skipped": 0, "stopped": 0}, []
    eta = runlog.Eta(specs, t_start)  # elapsed counts the data and reference-statistics work too
    for i, spec in enumerate(specs):
        print(f"side_by_side: {eta.before(i)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        r = train_run(spec, out, data, net, ref, device, max_steps=args.max_steps, keep_models=args.keep_models)
        eta.after(i, time.perf_counter() - t0, r)
        results.append(r)
        status = "skipped (finished before)" if r.get("skipped") else ("done" if r["finished"] else "stopped")
        counts["skipped" if r.get("skipped") else ("trained" if r["finished"] else "stopped")] += 1
        if not r.get("skipped"):
            trained.append(f"{runlog.run_key(spec)}@{r['config_hash']}")
        print(f"side_by_side: {runlog.run_key(spec)}: {status}", file=sys.stderr)
    wall = time.perf_counter() - t_start
    command = f"{PROG} " + shlex.join(sys.argv[1:] if argv is None else argv)
    invocation = {
        "command": command, "commit": _measure.git_commit(), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "wall_s": wall,
        "cpu_s": time.process_time() - cpu_start, "data_s": t_data, "ref_stats_s": t_ref,
        "load_average": f"{load_before} at start, {_measure.load_average()} at end", **counts, "runs": trained,
    }  # fmt: skip
    meta = {
        "preset": args.preset, "preset_note": preset.note, "device": _measure.device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "commit": _measure.git_commit(),
        "command": command, "data": data.name, "train_images": len(data), "metric": net.key,
        "fid_name": net.fid_name, "is_name": net.is_name, "ref_n": int(ref["n"]), "ref_is": float(ref["is"]),
        "n_eval": sorted({s.n_eval for s in specs}), "classifier_check": check, "real_pixel_std": real_std,
        "metric_note": _metric_note(net, check, ref), "overrides": _overrides(args),
        # oneDNN/MKL kernels round differently per instruction set: the same run on AVX2 and AVX-512 hosts diverges
        "load": invocation["load_average"], "cpu_capability": invocation["cpu_capability"],
        "invocations": runlog.keep_invocations(_previous_invocations(out), invocation, results),
    }  # fmt: skip
    shows = write_outputs(out, meta, results)
    print("\nWhat this run shows:\n" + "\n".join(shows).replace("**", ""), file=sys.stderr)
    print(f"side_by_side: {len(results)} runs, {wall:.0f} s wall; results in {out}", file=sys.stderr)
    return 0


def _overrides(args: argparse.Namespace) -> str:
    """The flags that replace the preset's budget (so the preset's note is read with them), e.g. ``--steps 200``."""
    flags = [("setups", args.setups), ("treatments", args.treatments), ("seeds", args.seeds), ("steps", args.steps),
             ("n-eval", args.n_eval), ("eval-every", args.eval_every)]  # fmt: skip
    return " ".join(f"--{k} {v}" for k, v in flags if v is not None)


def _metric_note(net: FeatureNet, check: dict | None, ref: dict) -> str:
    note = f"The real images' own {net.is_name} is {float(ref['is']):.2f}."
    if check is not None:
        acc = 100 * check["top1"]
        note += f" The classifier's top-1 accuracy on {check['images']} byte-exact test images: {acc:.1f} %."
    if net.key.startswith("clf-"):
        note += " Not comparable with published Inception FID/IS."
    return note


def _previous_invocations(out: Path) -> list[dict[str, Any]]:
    """The invocations recorded in an earlier ``side_by_side.json`` here (kept in the header only while a run they
    trained is in the table: see ``runlog.keep_invocations``)."""
    try:
        return list(json.loads((out / "side_by_side.json").read_text())["meta"]["invocations"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_outputs(out: Path, meta: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """The report, JSON and figures; returns the "what this run shows" lines (also at the top of the report)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = report.aggregate(results)
    summary.mark_collapse(rows, results, meta.get("real_pixel_std"))
    shows = summary.what_it_shows(rows, results, meta)
    meta = {**meta, "n_eval": "/".join(map(str, meta["n_eval"]))}
    header = [
        f"# Side-by-side GAN training ({meta['preset']} preset)", "", "## What this run shows", "", *shows, "",
        "## Setup", "",
        f"- device: {meta['device']}; torch {meta['torch']}",
        f"- data: {meta['data']} ({meta['train_images']} images); metric: {meta['fid_name']} / {meta['is_name']}",
    ]  # fmt: skip
    for i, inv in enumerate(meta["invocations"], 1):
        header.append(
            f"- invocation {i} (`{inv['command']}`, {inv['commit']}, {inv['threads']} threads, "
            f"CPU kernels {inv.get('cpu_capability', 'not recorded')}): "
            f"{inv['trained']} runs trained, {inv['stopped']} stopped, {inv['skipped']} reused; wall time "
            f"{inv['wall_s']:.0f} s end to end (data {inv['data_s']:.0f} s, reference statistics "
            f"{inv['ref_stats_s']:.0f} s), process CPU time {inv['cpu_s']:.0f} s; load average (1/5/15 min) "
            f"{inv['load_average']}"
        )
    figures = []
    for setup in dict.fromkeys(r["setup"] for r in results):
        plots.plot_scores(results, setup, out / f"scores_{setup}.png", meta.get("real_pixel_std"))
        names = plots.plot_constants(results, setup, out)
        figures.append(" ".join([f"![{setup} scores](scores_{setup}.png)", *(f"![{n}]({n})" for n in names)]))
    gains = report.gains_section(results)
    gains = f"### Per-layer sparsity gains\n\n{gains}" if gains else ""
    mechanism = "\n".join(diagnosis.markdown(results, meta.get("real_pixel_std")))
    md = "\n".join([*header, "", "## Results", "", report.markdown(rows), mechanism, gains, report.notes(meta), "",
                    *figures, ""])  # fmt: skip
    (out / "side_by_side.md").write_text(md)
    slim = [
        {k: v for k, v in r.items() if k != "history"}
        | {"evals": r["history"]["eval"], "layer_gains": r["history"].get("layer_gains", [])}
        for r in results
    ]
    atomic_json({"meta": meta, "rows": rows, "runs": slim}, out / "side_by_side.json")
    print(md)
    return shows


if __name__ == "__main__":
    sys.exit(main())
