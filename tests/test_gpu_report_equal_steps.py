"""The GPU quality report's equal-G-steps table: time-boxed runs reach different G steps (SN with 5 critic steps
the fewest), so the scores are also compared at the last step every run was evaluated at."""

from __future__ import annotations

import copy
import statistics
from pathlib import Path

from benchmarks.gan.checkpoint import read_json
from benchmarks.gpu.report import equal_steps

RUNS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "diagnosis_cpu_2000" / "runs" / "cnn"


def _runs(treatment: str) -> list[dict]:
    return [read_json(RUNS / treatment / f"seed{s}" / "result.json") for s in (0, 1)]


def _cut(result: dict, last: int, deadline: int) -> dict:
    """A time-boxed run: evaluated every 200 steps up to ``last``, then once at its deadline step."""
    out = copy.deepcopy(result)
    evals = [e for e in out["history"]["eval"] if e["step"] <= last]
    out["history"]["eval"] = [*evals, {**evals[-1], "step": deadline, "fid": 999.0}]
    return out


def test_scores_are_compared_at_the_last_step_every_run_reached() -> None:
    sn5 = [_cut(r, 600, 731 + i) for i, r in enumerate(_runs("sn-5d"))]
    san = [_cut(r, 1800, 1900 + i) for i, r in enumerate(_runs("san"))]
    lines = equal_steps(sn5 + san)
    assert lines[0].startswith("At equal G steps: classifier-FID (resnet20) at G step 600,")
    for label, runs in (("SN, 5 D steps", sn5), ("SAN", san)):
        want = [next(e["fid"] for e in r["history"]["eval"] if e["step"] == 600) for r in runs]
        row = f"| {label} | {statistics.fmean(want):.2f} ± {statistics.stdev(want):.2f} | 2 |"
        assert row in lines, (row, lines)
    assert not any("999" in line for line in lines)  # deadline evaluations differ between runs: never compared


def test_only_step_zero_in_common_says_so() -> None:
    runs = [_cut(_runs("sn")[0], 0, 150), _cut(_runs("san")[0], 400, 480)]
    assert equal_steps(runs)[0] == "At equal G steps: no G step after 0 was evaluated in every run."
    assert equal_steps([]) == []
