"""Results table: per setup × treatment, final/best score ± std over seeds, step times, peak memory."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Optional

from .._report import fmt_mib, fmt_ms
from .collapse import RULE


def _mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}g}" if digits > 2 else f"{values[0]:.2f}"
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return f"{mean:.{digits}g} ± {std:.2g}" if digits > 2 else f"{mean:.2f} ± {std:.2f}"


def _median(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def aggregate(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setup, treatment): scores over seeds, median step times, max peak memory."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results:
        groups[(r["setup"], r["treatment"])].append(r)
    rows = []
    for (setup, treatment), rs in groups.items():
        scored = [r for r in rs if r["final"] is not None]
        mem_d = [r["memory"].get("d_step_peak_mib") for r in rs if r["memory"].get("d_step_peak_mib") is not None]
        mem_g = [r["memory"].get("g_step_peak_mib") for r in rs if r["memory"].get("g_step_peak_mib") is not None]
        rows.append(
            {
                "setup": setup, "setup_label": rs[0]["setup_label"], "treatment": treatment,
                "treatment_label": rs[0]["treatment_label"], "n_dis": rs[0]["n_dis"],
                "seeds": [r["seed"] for r in rs], "finished": all(r["finished"] for r in rs),
                "steps": rs[0]["steps"], "steps_done": min(r["steps_done"] for r in rs), "batch": rs[0]["batch"],
                "fid_name": rs[0]["fid_name"], "is_name": rs[0]["is_name"],
                "final_fid": [r["final"]["fid"] for r in scored], "final_is": [r["final"]["is"] for r in scored],
                "best_fid": [r["best"]["fid"] for r in scored], "best_fid_step": [r["best"]["step"] for r in scored],
                "d_step_ms": _median([r["d_step_ms"] for r in rs]), "g_step_ms": _median([r["g_step_ms"] for r in rs]),
                "d_step_peak_mib": max(mem_d) if mem_d else None, "g_step_peak_mib": max(mem_g) if mem_g else None,
                "train_s": sum(r["elapsed"]["train_s"] for r in rs), "cpu_s": sum(r["elapsed"]["cpu_s"] for r in rs),
                **{f"final_{k}": [r["final"].get(k) for r in scored if r["final"].get(k) is not None]
                   for k in DIAGNOSTICS},
            }
        )  # fmt: skip
    return rows


DIAGNOSTICS = ("pixel_std", "top_class", "d_real", "d_fake", "d_loss", "g_loss")


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table per setup; the score columns are named by the metric (e.g. ``classifier-FID (resnet20)``)."""
    out = []
    for setup in dict.fromkeys(r["setup"] for r in rows):
        rs = [r for r in rows if r["setup"] == setup]
        fid, is_ = rs[0]["fid_name"], rs[0]["is_name"]
        out += [f"### {rs[0]['setup_label']}", ""]
        head = ["treatment", "D steps / G step", f"{fid} final ↓", f"{fid} best ↓ (step)", f"{is_} final ↑",
                "ms / D step", "ms / G step", "peak MiB D step", "peak MiB G step", "G steps", "seeds",
                "collapsed"]  # fmt: skip
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rs:
            steps = f"{r['steps_done']}/{r['steps']}" + ("" if r["finished"] else " (unfinished)")
            best_at = "/".join(str(s) for s in r["best_fid_step"])
            cells = [
                r["treatment_label"], str(r["n_dis"]), _mean_std(r["final_fid"]),
                f"{_mean_std(r['best_fid'])} ({best_at})", _mean_std(r["final_is"]),
                fmt_ms(r["d_step_ms"]) if r["d_step_ms"] is not None else "—",
                fmt_ms(r["g_step_ms"]) if r["g_step_ms"] is not None else "—",
                fmt_mib(r["d_step_peak_mib"]) if r["d_step_peak_mib"] is not None else "—",
                fmt_mib(r["g_step_peak_mib"]) if r["g_step_peak_mib"] is not None else "—",
                steps, str(len(r["seeds"])), _collapsed(r),
            ]  # fmt: skip
            out.append("| " + " | ".join(cells) + " |")
        out += ["", *diagnostics_table(rs), ""]
    return "\n".join(out)


def _collapsed(row: dict[str, Any]) -> str:
    if not row.get("collapse_measured"):
        return "—"
    n = row.get("collapsed_final", 0)
    return f"**yes** ({n}/{len(row['seeds'])})" if n else "no"


def diagnostics_table(rs: list[dict[str, Any]]) -> list[str]:
    """Collapse diagnostics at the last evaluation (mean ± std over seeds)."""
    if not any(r.get("final_top_class") for r in rs):
        return []
    head = ["treatment", "per-pixel std across samples", "top-class fraction", "mean abs D(real)",
            "mean abs D(fake)", "D loss", "G loss", "collapsed"]  # fmt: skip
    out = ["Collapse diagnostics at the last evaluation (see the notes for the rule):", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for r in rs:
        cells = [r["treatment_label"], *(_mean_std(r.get(f"final_{k}", []), 3) for k in DIAGNOSTICS), _collapsed(r)]
        out.append("| " + " | ".join(cells) + " |")
    return out


def gains_section(results: list[dict[str, Any]]) -> str:
    """Per run with sparsity gains: each hidden conv's effective input density ρ and gain g_l, first and last."""
    out = []
    for r in results:
        measured = [m for m in r.get("history", {}).get("layer_gains", []) if "gains" in m]
        if not measured:
            continue
        first, last = measured[0], measured[-1]
        out += [
            f"#### {r['setup_label']}: {r['treatment_label']}, seed {r['seed']} (ρ = k_eff/n, g_l)", "",
            f"| layer | ρ at step {first['step']} | g_l at step {first['step']} | ρ at step {last['step']} "
            f"| g_l at step {last['step']} |",
            "|---|---|---|---|---|",
        ]  # fmt: skip
        for name in last["effective_density"]:
            cells = [name]
            for m in (first, last):
                rho = m["effective_density"].get(name)
                gain = m["gains"].get(name)
                cells += ["—" if rho is None else f"{rho:.3f}", "—" if gain is None else f"{gain:.3f}"]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "g_l = — : no gain (the critic's input layer, or a Linear layer: plain SAN).", ""]
    return "\n".join(out)


def notes(meta: dict[str, Any]) -> str:
    fid = meta.get("fid_name", "the metric")
    return "\n".join(
        [
            "Notes:",
            f"- Scores: {fid} = Fréchet distance (float64) between the feature statistics of {meta['n_eval']} "
            f"generator samples (fixed noise, G in eval mode) and of {meta['ref_n']} real training images; "
            f"IS from the same network's softmax. {meta['metric_note']}",
            "- ± = standard deviation over seeds (none shown for one seed); `seeds` = how many seeds. Final = last "
            "evaluation; best = lowest over the evaluations (step in parentheses).",
            "- Collapse diagnostics (per evaluation, plotted under the score curves): per-pixel std across the "
            "samples (images in [0, 1]; the real training images' is "
            + (f"{meta['real_pixel_std']:.3f}" if meta.get("real_pixel_std") is not None else "not measured")
            + "), the fraction of samples in the classifier's most frequent class, the critic's mean |D(x)| on 256 "
            "fixed real images and 256 samples (eval mode), the mean logged D/G hinge losses since the previous "
            f"evaluation. Rule: {RULE}; `collapsed` counts the seeds collapsed at the last evaluation.",
            "- Times: median wall time of one critic update (fresh batch, G forward without grad, hinge loss (+GP), "
            "backward, Adam step, SAN rescale when due) and of one generator update; the first and the "
            "memory-profiled iterations excluded. Runs are timed one after another, so a change in machine load "
            "between runs shows up in these columns (load average in the header); for a like-for-like cost "
            "comparison see `python -m benchmarks.speed_side_by_side` (interleaved). Peak MiB: memory allocated "
            "during one such step above what was "
            "allocated before it (CUDA allocator peak; on CPU the profiler's allocation events).",
            "- SAN: `san_core.apply_san` on every conv/linear/embedding of the critic (circular padding), normalized "
            "before the first forward and after every (every 100th) critic optimizer step; r=0.25 uses Eq. 9's "
            "gain. SN: `torch.nn.utils.parametrizations.spectral_norm` on the same layers. GP: hinge + 10·GP.",
            "- SAN + sparsity gains (experimental, beyond the paper): at every evaluation the critic's hidden convs "
            "are measured on 256 fixed real training images (`san_core.inspect_critic`: effective input density "
            "ρ = k_eff/n) and SAN divides each by g_l·‖W‖₀,∞, g_l = clip(√(ρ_l/ρ_min), 1, σ₁/‖W‖₀,∞) "
            "(`SAN(layer_gains=...)`); the measurement counts as evaluation time, not step time.",
            f"- {meta['preset_note']}"
            + (f" This table overrides the preset with `{meta['overrides']}`." if meta.get("overrides") else ""),
        ]
    )
