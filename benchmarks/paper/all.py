"""Run every paper script: ``python -m benchmarks.paper.all [--quick] [--threads N] [--out-dir DIR] [--only a,b]``.

Order: fig2, fig5 (trains the unnormalized critic that fig3 and eq9 reuse from ``.data/paper``), fig3, eq9,
fig4. Prints each script's wall time and where its outputs went.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Optional

from benchmarks.paper._common import RESULTS

SCRIPTS = ("fig2_lipschitz_fit", "fig5_channel_sparsity", "fig3_singular_values", "eq9_gain", "fig4_exact_vs_sn")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.paper.all", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--only", default=None, help=f"comma list of {','.join(SCRIPTS)}")
    args = p.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = [s for s in chosen if s not in SCRIPTS]
    if unknown:
        p.error(f"--only: unknown scripts {unknown}; choose from {SCRIPTS}")
    common = ["--out-dir", str(args.out_dir)] + (["--quick"] if args.quick else [])
    common += ["--threads", str(args.threads)] if args.threads else []
    done = []
    for name in chosen:
        start = time.perf_counter()
        out = importlib.import_module(f"benchmarks.paper.{name}").main(common)
        done.append((name, time.perf_counter() - start, out["md"]))
    for name, seconds, md in done:
        print(f"{name}: {seconds:.0f} s -> {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
