"""PNG plots (matplotlib, Agg): score vs generator step per treatment; per-layer constants over training."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_treatment(results: list[dict[str, Any]], setup: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        if r["setup"] == setup:
            groups[r["treatment"]].append(r)
    return groups


def plot_scores(results: list[dict[str, Any]], setup: str, path: Path) -> None:
    """Two panels (FID-style ↓, IS ↑) vs generator step; mean over seeds with a ±std band."""
    plt = _pyplot()
    groups = _by_treatment(results, setup)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    first = next(iter(groups.values()))[0]
    for rs in groups.values():
        steps = sorted({e["step"] for r in rs for e in r["history"]["eval"]})
        for ax, field in zip(axes, ("fid", "is")):
            vals = np.array([[_at(r, s, field) for s in steps] for r in rs], dtype=float)
            mean = np.nanmean(vals, 0)
            (line,) = ax.plot(steps, mean, marker="o", ms=3, label=rs[0]["treatment_label"])
            if len(rs) > 1:
                std = np.nanstd(vals, 0)
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    axes[0].set_ylabel(f"{first['fid_name']} (lower is better)")
    axes[1].set_ylabel(f"{first['is_name']} (higher is better)")
    for ax in axes:
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{first['setup_label']}, batch {first['batch']}, {len(first['history']['eval'])} evaluations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _at(result: dict, step: int, field: str) -> float:
    for e in result["history"]["eval"]:
        if e["step"] == step:
            return e[field]
    return float("nan")


def plot_constants(results: list[dict[str, Any]], setup: str, path: Path) -> None:
    """One panel per treatment, one line per critic layer (first seed).

    SAN treatments: the constant ``‖W‖₀,∞`` (σ₁ for dense layers) SAN divided by at each logged normalization,
    i.e. how far the weights drifted since the previous one. Other treatments: ``‖W_eff‖₀,∞`` of the effective
    weights (after SN) at each evaluation, i.e. what SAN would divide by (for zero-padded convs, the
    circular-padding bound).
    """
    plt = _pyplot()
    groups = _by_treatment(results, setup)
    n = len(groups)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, rs in zip(axes.flat, groups.values()):
        r = rs[0]
        series = r["history"]["san_constants"] or r["history"]["effective_constants"]
        kind = "SAN constant before rescale" if r["history"]["san_constants"] else "‖W_eff‖₀,∞ (σ₁ dense)"
        layers = list(series[0]["values"]) if series else []
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        for layer in layers:
            ax.plot([p["step"] for p in series], [p["values"][layer] for p in series], lw=1, label=layer)
        ax.set_yscale("log")
        ax.set_title(f"{r['treatment_label']}\n{kind}", fontsize=9)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7)
    fig.suptitle(f"{next(iter(groups.values()))[0]['setup_label']}: per-layer constants over training", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
