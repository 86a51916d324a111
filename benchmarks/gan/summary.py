""" "What this run shows": a few honest lines, printed at the end of a side-by-side run and put at the top of its
report. What a CPU budget measures reliably (cost per step, SAN's constants held at 1, the pipeline end to end),
what it does not (quality after a few dozen generator steps), and where the GPU results are."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .collapse import RULE, is_collapsed

GPU_RESULTS = Path(__file__).resolve().parents[1] / "results" / "gpu"
RELIABLE_STEPS = 10_000  # G steps below which quality differences are not read as a ranking here


def _row(rows: list[dict], setup: str, treatment: str) -> Optional[dict]:
    return next((r for r in rows if r["setup"] == setup and r["treatment"] == treatment), None)


def _costs(rows: list[dict]) -> list[str]:
    out = []
    for setup in dict.fromkeys(r["setup"] for r in rows):
        san, sn, none = (_row(rows, setup, t) for t in ("san", "sn", "none"))
        if san is None or san["d_step_ms"] is None:
            continue
        parts = [f"{san['d_step_ms'] / ref['d_step_ms']:.2f}× {label}'s" for ref, label in ((sn, "SN"), (none, "none"))
                 if ref is not None and ref["d_step_ms"]]  # fmt: skip
        if parts:
            out.append(f"{san['setup_label']}: {' and '.join(parts)}")
    return out


def _drift(results: list[dict]) -> Optional[tuple[float, int]]:
    """Largest |c − 1| of SAN's per-layer constants before a rescale (every-step SAN, after its first one)."""
    worst, n = 0.0, 0
    for r in results:
        if r["treatment"] != "san":
            continue
        for entry in r.get("history", {}).get("san_constants", [])[1:]:
            for v in entry["values"].values():
                worst, n = max(worst, abs(v - 1.0)), n + 1
    return (worst, n) if n else None


def what_it_shows(rows: list[dict[str, Any]], results: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """Markdown bullet lines (also printed as plain text at the end of the run)."""
    steps = max((r["steps_done"] for r in rows), default=0)
    lines = [
        f"- **Pipeline, end to end:** {len(results)} runs ({', '.join(dict.fromkeys(r['setup'] for r in rows))}) "
        f"trained on {meta['data']} and scored with {meta['fid_name']} at every evaluation, with the collapse "
        "diagnostics below.",
    ]
    costs = _costs(rows)
    if costs:
        lines.append(
            "- **Cost per critic step** (what a CPU measures well, as ratios): in this run SAN's critic update took "
            + "; ".join(costs) + f" (median ms per D step; load average {meta.get('load', 'n/a')}). The runs are "
            "timed one after another, so a change of machine load between them moves these ratios; "
            "`python -m benchmarks.speed_side_by_side` interleaves the treatments for the like-for-like ratio."
        )  # fmt: skip
    drift = _drift(results)
    if drift is not None:
        lines.append(
            f"- **SAN's constants stay at 1:** over {drift[1]} per-layer values logged before a rescale, the largest "
            f"|‖W‖₀,∞ − 1| was {drift[0]:.2e}: one optimizer step moves each layer's gain that little, and every "
            "rescale brings it back to exactly 1."
        )
    collapsed = [f"{r['setup']}/{r['treatment_label']}" for r in rows if r.get("collapsed_final")]
    lines.append(
        f"- **Not measured reliably here: quality.** After {steps} generator steps the scores describe the first "
        f"steps of training, not where it ends; differences between treatments are within the run-to-run spread "
        f"(a ranking needs ≥ {RELIABLE_STEPS // 1000}k steps at batch 64 and several seeds). "
        + (f"Collapsed at the last evaluation ({RULE}): {', '.join(collapsed)}." if collapsed else
           f"None collapsed at the last evaluation ({RULE}).")
    )  # fmt: skip
    report = GPU_RESULTS / "gpu_report.md"
    if report.is_file():
        lines.append(f"- **Quality on a GPU:** see `{report.relative_to(GPU_RESULTS.parents[1])}` "
                     "(`python -m benchmarks.gpu`: the SNGAN CNN at batch 64, several seeds, ≥ 5k samples per "
                     "evaluation).")  # fmt: skip
    else:
        lines.append("- **Quality on a GPU:** not measured yet; `python -m benchmarks.gpu` is the prepared run "
                     "(results go to `benchmarks/results/gpu/` once a GPU has run it).")  # fmt: skip
    return lines


def mark_collapse(rows: list[dict[str, Any]], results: list[dict[str, Any]], real_pixel_std: Optional[float]) -> None:
    """Adds ``collapsed`` to every evaluation and ``collapsed_final`` (any seed collapsed at its last evaluation)
    to every row, in place."""
    for r in results:
        for e in r.get("history", {}).get("eval", []):
            e["collapsed"] = is_collapsed(e, real_pixel_std)
    for row in rows:
        mine = [r for r in results if (r["setup"], r["treatment"]) == (row["setup"], row["treatment"])]
        finals = [r["history"]["eval"][-1].get("collapsed") for r in mine if r["history"]["eval"]]
        row["collapsed_final"] = sum(bool(c) for c in finals)
        row["collapse_measured"] = any(c is not None for c in finals)
