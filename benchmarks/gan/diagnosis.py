"""The mechanism table of issue 12's collapse diagnosis: per treatment, what each explanation predicts and what the
runs measured (mean ± std over seeds).

- **scale at init**: mean ``|D(real)|`` at step 0 and its ratio to SN's of the same seed (same initial weights,
  same probe);
  ``san-scaled``'s α (:mod:`benchmarks.gan.calibrate`);
- **hinge saturation**: the fraction of real samples with ``D(x) > 1`` and of fakes with ``D(G(z)) < −1`` on the
  training batches (no critic gradient from those), averaged over all logged steps of the run;
- **the generator's signal**: the median global norm of G's gradient over the logged steps (Adam divides most of
  a constant scale out of it, so read it within a treatment, over time, more than across treatments) and, at the
  last evaluation, how aligned the critic's input gradients at the samples are (``grad_align``, 1 = one
  direction for every sample, :mod:`benchmarks.gan.critic_probe`);
- **the outcome**: the final score and how many seeds collapsed (:mod:`benchmarks.gan.collapse`).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Optional

from .collapse import is_collapsed


def _fmt(values: list[float], digits: int = 3) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    mean = statistics.fmean(vals)
    spread = f" ± {statistics.stdev(vals):.2g}" if len(vals) > 1 else ""
    return f"{mean:.{digits}g}{spread}"


def _run_mean(result: dict[str, Any], key: str) -> Optional[float]:
    vals = [e[key] for e in result.get("history", {}).get("loss", []) if e.get(key) is not None]
    return statistics.fmean(vals) if vals else None


def _run_median(result: dict[str, Any], key: str) -> Optional[float]:
    vals = [e[key] for e in result.get("history", {}).get("loss", []) if e.get(key) is not None]
    return statistics.median(vals) if vals else None


def _at_step0(result: dict[str, Any], key: str) -> Optional[float]:
    evals = result.get("history", {}).get("eval", [])
    return evals[0].get(key) if evals and evals[0]["step"] == 0 else None


def rows(results: list[dict[str, Any]], real_pixel_std: Optional[float]) -> list[dict[str, Any]]:
    """One row per (setup, treatment) with the measured figures (lists over seeds)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results:
        groups[(r["setup"], r["treatment"])].append(r)
    sn_init = {(setup, r["seed"]): _at_step0(r, "d_real") for (setup, t), rs in groups.items() if t == "sn" for r in rs}
    out = []
    for (setup, treatment), rs in groups.items():
        init = [_at_step0(r, "d_real") for r in rs]
        ratio = [v / sn_init[(setup, r["seed"])] for v, r in zip(init, rs) if v is not None
                 and sn_init.get((setup, r["seed"]))]  # fmt: skip
        finals = [r["history"]["eval"][-1] for r in rs if r.get("history", {}).get("eval")]
        out.append({
            "setup": setup, "treatment": treatment, "label": rs[0]["treatment_label"], "seeds": len(rs),
            "steps_done": min(r["steps_done"] for r in rs), "fid_name": rs[0]["fid_name"],
            "final_fid": [e["fid"] for e in finals],
            "collapsed": sum(bool(is_collapsed(e, real_pixel_std)) for e in finals),
            "d_real_init": init,
            "init_ratio_to_sn": ratio,
            "alpha": [r["history"]["calibration"]["alpha"] for r in rs if r["history"].get("calibration")],
            "sat_real": [_run_mean(r, "sat_real") for r in rs], "sat_fake": [_run_mean(r, "sat_fake") for r in rs],
            "g_grad": [_run_median(r, "g_grad") for r in rs],
            "d_real_final": [e.get("d_real") for e in finals], "grad_align": [e.get("grad_align") for e in finals],
            "pixel_std": [e.get("pixel_std") for e in finals], "top_class": [e.get("top_class") for e in finals],
        })  # fmt: skip
    return out


def markdown(results: list[dict[str, Any]], real_pixel_std: Optional[float]) -> list[str]:
    """The mechanism table (empty when the runs carry no saturation figures, e.g. results of older commits)."""
    table = rows(results, real_pixel_std)
    if not any(any(v is not None for v in r["sat_real"]) for r in table):
        return []
    head = ["treatment", "final score ↓", "collapsed", "mean abs D(real) at step 0", "× SN's at step 0", "α",
            "real with D > 1 (train)", "fake with D < −1 (train)", "G grad norm (median)",
            "mean abs D(real), last eval", "grad_align, last eval", "per-pixel std", "top-class fraction"]  # fmt: skip
    lines = ["#### Mechanism diagnostics (issue 12)", "",
             f"Score: {table[0]['fid_name']} at the last evaluation. Saturation: fraction of the training batches' "
             "samples whose hinge term gives the critic no gradient, averaged over the logged steps. ± = std over "
             "seeds.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for r in table:
        cells = [
            r["label"], _fmt(r["final_fid"], 4), f"{r['collapsed']}/{r['seeds']}", _fmt(r["d_real_init"]),
            _fmt(r["init_ratio_to_sn"]), _fmt(r["alpha"]), _fmt(r["sat_real"], 2), _fmt(r["sat_fake"], 2),
            _fmt(r["g_grad"]), _fmt(r["d_real_final"]), _fmt(r["grad_align"], 2), _fmt(r["pixel_std"], 2),
            _fmt(r["top_class"], 2),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]
