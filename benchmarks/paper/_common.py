"""Shared plumbing of the paper scripts: arguments, run metadata, output files, matplotlib (Agg)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from benchmarks import _measure as M
from benchmarks._figures import save_png

RESULTS = M.ROOT / "benchmarks" / "results"


def parser(name: str, doc: Optional[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.paper.{name}", description=doc)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds; synthetic data where needed)")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where paper_*.{png,md,json} go")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1 is fastest on a busy CPU)")
    p.add_argument("--seed", type=int, default=0)
    return p


class Run:
    """Metadata (device, torch, commit, command, wall time) and the writers of one script's outputs."""

    def __init__(self, name: str, module: str, args: argparse.Namespace, argv: Optional[list[str]]) -> None:
        if args.threads:
            torch.set_num_threads(args.threads)
        self.stem = f"paper_{name}" + ("_quick" if args.quick else "")
        self.out_dir = Path(args.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        self.meta: dict[str, Any] = {
            "device": M.device_name(torch.device("cpu")),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "commit": M.git_commit(),
            "command": f"python -m benchmarks.paper.{module} " + shlex.join(sys.argv[1:] if argv is None else argv),
            "load_average_start": M.load_average(),
        }

    def path(self, suffix: str) -> Path:
        return self.out_dir / f"{self.stem}{suffix}"

    def header(self, title: str) -> str:
        m = self.meta
        return "\n".join(
            [
                f"# {title}",
                "",
                f"- device: {m['device']}, torch {m['torch']}, {m['threads']} threads",
                f"- git commit: {m['commit']}",
                f"- command: `{m['command']}`",
                f"- wall time: {m['wall_s']:.0f} s; load average (1/5/15 min) at start {m['load_average_start']}",
                "",
            ]
        )

    def finish(self, title: str, body: str, data: dict[str, Any], figure: Any) -> dict[str, Any]:
        """Save the PNG, the markdown (header + body) and the JSON (meta + data); returns the paths and data."""
        self.meta["wall_s"] = time.perf_counter() - self.start
        save_png(figure, self.path(".png"), dpi=110, bbox_inches="tight")
        plt = pyplot()
        plt.close(figure)
        self.path(".md").write_text(self.header(title) + body.rstrip() + "\n")
        payload = {"meta": self.meta, **data}
        self.path(".json").write_text(json.dumps(payload, indent=1, allow_nan=True, default=str) + "\n")
        print(self.header(title) + body, flush=True)
        return {"png": self.path(".png"), "md": self.path(".md"), "json": self.path(".json"), **data}


def pyplot():
    """matplotlib.pyplot on the Agg backend, or an ImportError saying what to install."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("the paper scripts need matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
