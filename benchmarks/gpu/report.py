"""The GPU run's report: ``gpu_report.md`` (what it shows first, then each stage's table), ``quality.png`` (the
metric curves and collapse diagnostics per treatment, mean ± std over seeds), ``speed.png`` (critic-update time
per treatment as a ratio to no normalization), ``worker_logs.txt`` (the tail of each quality worker's output)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .._figures import save_png
from .._report import fmt_ms
from ..gan import diagnosis, plots
from ..gan import report as table
from ..gan.collapse import RULE
from ..gan.summary import mark_collapse


def write(out: Path, results: dict[str, Any]) -> None:
    """Writes the report files; a stage missing from ``results`` is reported as not run."""
    lines: list[str] = []
    stages = (("quality", _quality), ("speed", _speed), ("correctness", _correctness))
    if results["meta"].get("mode") == "diagnose":  # the diagnosis run has the quality stage only
        stages = stages[:1]
    for name, fn in stages:
        try:
            lines += fn(results.get(name), out)
        except Exception as err:  # one stage's broken results must not cost the others their report
            lines += [f"## {name}", "", f"(report of this stage failed: {type(err).__name__}: {err})", ""]
    m = results["meta"]
    diagnosing = m.get("mode") == "diagnose"
    title = "GPU diagnosis run (issue 12: why does SAN collapse?)" if diagnosing else "GPU evidence run"
    head = [
        f"# {title}" + (" (SMOKE: CPU, tiny budgets — checks the pipeline only)" if m["smoke"] else ""), "",
        f"- command: `{m['command']}`; commit {m['commit']}; started {m['started']}",
        f"- device: {m['device']}; torch {m['torch']}, CUDA {m['cuda']}; {m['cpu_cores']} CPU cores",
        f"- wall time {m.get('elapsed_s', 0):.0f} s of a {m['budget_s']:.0f} s budget",
        f"- data: {m['data']['images']} CIFAR-10 training images ({m['data']['subset']}; from {m['data']['source']}); "
        f"classifier {m['data']['classifier']}" + (" — SYNTHETIC DATA, UNTRAINED CLASSIFIER: test only"
                                                  if m["data"].get("synthetic") else ""), "",
        "## What this run shows", "", *_shows(results), "",
    ]  # fmt: skip
    (out / "gpu_report.md").write_text("\n".join(head + lines))


def _shows(results: dict[str, Any]) -> list[str]:
    out = []
    q = results.get("quality") or {}
    rows = q.get("rows") or []
    for r in rows:
        fid = r["final_fid"]
        spread = f" ± {statistics.stdev(fid):.2f}" if len(fid) > 1 else ""
        out.append(f"- {r['treatment_label']}: {r['fid_name']} {statistics.fmean(fid):.2f}{spread} after "
                   f"{r['steps_done']} G steps (min over seeds), {len(fid)} seeds; collapsed in "
                   f"{r.get('collapsed_final', 0)}/{len(r['seeds'])}")  # fmt: skip
    if not rows:
        out.append("- quality: no result (see below)")
    c = results.get("correctness") or {}
    if c:
        out.append("- correctness: " + "; ".join(f"{k}: {v.get('status', 'ok' if v.get('ok') else 'FAILED')}"
                                                  for k, v in c.items()))  # fmt: skip
    return out


def _quality(q: Any, out: Path) -> list[str]:
    lines = ["## (c) Quality: SNGAN standard CNN, " + ", ".join(q.get("treatments") or ["SN", "SAN"]) if q else
             "## (c) Quality: SNGAN standard CNN", ""]  # fmt: skip
    if not q or not q.get("results"):
        return [*lines, f"Not run or no result: {q.get('status', 'no worker wrote a result') if q else 'skipped'}", ""]
    results = q["results"]
    rows = table.aggregate(results)
    mark_collapse(rows, results, q.get("real_pixel_std"))
    q["rows"] = rows
    plots.plot_scores(results, "cnn", out / "quality.png", q.get("real_pixel_std"))
    cfg = q["config"]
    lines += [
        f"Batch {cfg['batch']}, Adam 2e-4 β=(0.5, 0.9), hinge loss, G {cfg['g_ch']} / D {cfg['d_ch']} channels; "
        f"seeds {cfg['seeds']}; evaluated every {cfg['eval_every']} G steps and at the deadline on {cfg['n_eval']} "
        f"samples; {len(results)} runs trained concurrently ({cfg['procs']} processes at once). "
        "Runs are time-boxed: `G steps` says how far each got. " + (q.get("note") or ""), "",
        table.markdown(rows), f"Collapse rule: {RULE}. ± = std over seeds.", "",
        *equal_steps(results), *diagnosis.markdown(results, q.get("real_pixel_std")), "![quality](quality.png)", "",
    ]  # fmt: skip
    workers = q.get("workers", {})
    bad = {k: v for k, v in workers.items() if v.get("rc") not in (0,)}
    if bad:
        lines += ["Workers that did not end normally: " + ", ".join(f"{k} ({v})" for k, v in bad.items()), ""]
    tails = q.get("worker_log_tails") or {}
    (out / "worker_logs.txt").write_text("\n\n".join(f"== {k}\n{v}" for k, v in tails.items() if v))
    return lines


def equal_steps(results: list[dict[str, Any]]) -> list[str]:
    """The score of every treatment at the last G step that every run was evaluated at (mean ± std over seeds).

    The runs are time-boxed, so the table above compares them at equal wall time (SN with 5 critic steps reaches
    fewer G steps); this one compares them at equal G steps, the paper's axis."""
    if not results:
        return []
    steps = set.intersection(*({e["step"] for e in r["history"]["eval"]} for r in results))
    if not steps:
        return []
    step = max(steps)
    if step == 0:
        return ["At equal G steps: no G step after 0 was evaluated in every run.", ""]
    name = results[0].get("fid_name", "FID")
    by: dict[str, list[float]] = {}
    for r in results:
        by.setdefault(r["treatment_label"], []).extend(e["fid"] for e in r["history"]["eval"] if e["step"] == step)
    rows = [f"| {label} | {statistics.fmean(v):.2f}" + (f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else "")
            + f" | {len(v)} |" for label, v in by.items()]  # fmt: skip
    return [f"At equal G steps: {name} at G step {step}, the last one every run was evaluated at:", "",
            "| treatment | score ↓ | seeds |", "|---|---|---|", *rows, ""]  # fmt: skip


def _speed(s: Any, out: Path) -> list[str]:
    lines = ["## (b) Speed: one critic update per treatment (ratio to none)", ""]
    if not s:
        return [*lines, "Not run.", ""]
    keys = s["treatments"]
    head = ["critic", "batch", *keys]
    lines += [f"Timer: {s['timer']}; interleaved rounds; median ms (× none). {s.get('note', '')}", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    bars: dict[str, list[float]] = {}
    failed: list[str] = []
    for name, c in s["critics"].items():
        if c.get("status") != "ok":
            lines.append(f"| {name} | — | {c.get('status')} |" + " |" * (len(keys) - 1))
            continue
        res = c["treatments"]
        cells = [f"{fmt_ms(res[k]['ms'])} ({res[k]['x_none']:.2f}×)" if k in res else "failed" for k in keys]
        lines.append("| " + " | ".join([name, str(c["batch"]), *cells]) + " |")
        bars[name] = [res[k]["x_none"] if k in res else float("nan") for k in keys]
        failed += [f"- {name} / {k}: {e}" for k, e in c.get("errors", {}).items()]
    if failed:
        lines += ["", "Treatments that failed (the others were timed):", "", *failed]
    if bars:
        _plot_speed(bars, keys, out / "speed.png")
        lines += ["", "![speed](speed.png)"]
    return [*lines, ""]


def _plot_speed(bars: dict[str, list[float]], keys: list[str], path: Path) -> None:
    plt = plots._pyplot()
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(bars)
    for i, (name, vals) in enumerate(bars.items()):
        ax.bar(np.arange(len(keys)) + i * width, vals, width, label=name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=20)
    ax.set_ylabel("critic update time / no normalization")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    plt.close(fig)


def _correctness(c: Any, out: Path) -> list[str]:
    lines = ["## (a) CUDA correctness", ""]
    if not c:
        return [*lines, "Not run.", ""]
    for key, v in c.items():
        if key == "constants" and "layers" in v:
            lines.append(f"- constants vs float64 CPU brute force: {len(v['layers'])} layers, max relative "
                         f"difference {v['max_rel']:.2e} (tolerance {v['tolerance']:.0e}): "
                         f"{'passed' if v['ok'] else 'FAILED'} ({v['seconds']} s)")  # fmt: skip
        else:
            extra = f"; {v['summary']}" if v.get("summary") else ""
            lines.append(f"- {key}: {v.get('status')}{extra} ({v.get('seconds')} s)")
    return [*lines, "", "Full pytest output: `pytest_gpu.log`.", ""]
