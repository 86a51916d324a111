"""Bookkeeping of a side-by-side invocation: stale-run check before any heavy work, ``--fresh``, progress with an
ETA, and the invocation log that the report header lists (only invocations whose runs are in the table)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

from .checkpoint import RunFiles
from .train import RunSpec

# Relative wall cost of one (D + G) step per setup at the presets' widths, from the committed cpu-quick report
# (CNN ≈ 350 ms, ResNet ≈ 2200 ms, BigGAN-style width 64 ≈ 330 ms per D+G step): only used for a setup not yet
# timed in this invocation; the ETA is refined from measured runs as they finish.
SETUP_COST = {"cnn": 1.0, "resnet": 6.0, "biggan": 1.0}


def run_key(spec: RunSpec) -> str:
    return f"{spec.setup.key}/{spec.treatment.key}/seed{spec.seed}"


def stale_runs(specs: list[RunSpec], out: Path, metric_key: str, data_name: str) -> list[RunSpec]:
    """The runs whose directory under ``out`` holds a run of another config (data content, settings, code
    layout of the config): cheap (reads small JSON files), so it is checked before data or models load."""
    return [s for s in specs if RunFiles(s.run_dir(out), s.config(metric_key, data_name)).is_stale()]


def handle_stale(stale: list[RunSpec], out: Path, fresh: bool, prog: str) -> bool:
    """With ``fresh``: delete the stale run directories and say so; without: print one message naming them all
    and ``--fresh``; returns False when the invocation must stop."""
    if not stale:
        return True
    names = ", ".join(run_key(s) for s in stale[:4]) + (f" and {len(stale) - 4} more" if len(stale) > 4 else "")
    if fresh:
        for s in stale:
            shutil.rmtree(s.run_dir(out))
        print(f"{prog}: --fresh: discarded {len(stale)} run(s) of another config under {out} ({names})",
              file=sys.stderr)  # fmt: skip
        return True
    print(f"{prog}: {out} holds {len(stale)} run(s) made with another config (data content or settings differ): "
          f"{names}; rerun with --fresh to discard them and train anew (for all at once), or pass another --out",
          file=sys.stderr)  # fmt: skip
    return False


def _units(spec: RunSpec, steps: Optional[int] = None) -> float:
    n = spec.steps if steps is None else steps
    return n * (spec.treatment.n_dis + 1) * SETUP_COST.get(spec.setup.key, 1.0)


class Eta:
    """Overall progress over runs: after each run, its wall time refines seconds per cost unit
    (G steps × (D steps + 1) × the setup's relative cost), and the remaining runs' units give the ETA."""

    def __init__(self, specs: list[RunSpec], start: Optional[float] = None) -> None:
        self.specs, self.start = specs, time.perf_counter() if start is None else start
        self.seconds, self.units = 0.0, 0.0

    def before(self, i: int) -> str:
        elapsed = time.perf_counter() - self.start
        remaining = sum(_units(s) for s in self.specs[i:])
        eta = f"ETA ~{_fmt(remaining * self.seconds / self.units)}" if self.units else "ETA after the first run"
        return f"[run {i + 1}/{len(self.specs)}, {_fmt(elapsed)} elapsed, {eta}] {run_key(self.specs[i])}"

    def after(self, i: int, seconds: float, result: dict[str, Any]) -> None:
        if result.get("skipped"):
            return
        self.seconds += seconds
        self.units += _units(self.specs[i], max(1, result.get("steps_done", 1)))


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def keep_invocations(previous: list[dict[str, Any]], current: dict[str, Any], results: list[dict]) -> list[dict]:
    """The invocations that trained a run shown in this table (run key and config hash both match), then this one
    when it trained or stopped anything; earlier ones whose runs were deleted or retrained are dropped."""
    shown = {f"{r['setup']}/{r['treatment']}/seed{r['seed']}@{r.get('config_hash')}" for r in results}
    kept = [inv for inv in previous if shown & set(inv.get("runs", []))]
    return [*kept, current] if current["trained"] + current["stopped"] else kept
