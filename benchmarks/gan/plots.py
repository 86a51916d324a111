"""PNG plots (matplotlib, Agg), one quantity per panel, every axis labelled:

- ``scores_<setup>.png``: the metric curves (FID-style ↓, IS ↑) and under them the collapse diagnostics
  (per-pixel std, top-class fraction, mean |D| on real and fake, D and G losses, and where measured the hinge
  saturation, the critic's input-gradient alignment and G's gradient norm) vs generator step; mean over
  seeds with a ±std band; the legend in its own panel so it covers no curve.
- ``san_constants_<setup>.png``: SAN treatments, the per-layer constant SAN divided by at each logged rescale
  vs the critic optimizer step it followed (1 = the weights did not move since the previous rescale).
- ``weight_constants_<setup>.png``: the other treatments, ‖W_eff‖₀,∞ of the effective weights (σ₁ for dense
  layers) at each evaluation vs generator step: what SAN would divide by.
Log scales only where a panel's values span more than a factor of 20.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .._figures import save_png
from .collapse import PIXEL_STD_FRACTION, TOP_CLASS_LIMIT

PAIRED = {"d_real": "d_fake", "sat_real": "sat_fake"}  # second quantity drawn dashed in the same panel


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


def _at(result: dict, step: int, field: str) -> float:
    for e in result["history"]["eval"]:
        if e["step"] == step:
            v = e.get(field)
            return float("nan") if v is None else float(v)
    return float("nan")


def _scale(ax: Any, values: list[float]) -> None:
    vals = np.asarray([v for v in values if np.isfinite(v) and v > 0])
    if vals.size and vals.max() / vals.min() > 20:
        ax.set_yscale("log")


def plot_scores(results: list[dict[str, Any]], setup: str, path: Path, real_pixel_std: Optional[float] = None) -> None:
    """Metric and collapse-diagnostic panels vs generator step (see the module docstring)."""
    plt = _pyplot()
    groups = _by_treatment(results, setup)
    first = next(iter(groups.values()))[0]
    panels = [
        ("fid", f"{first['fid_name']} (lower is better)"), ("is", f"{first['is_name']} (higher is better)"),
        ("pixel_std", "per-pixel std across samples"), ("top_class", "fraction of samples in the top class"),
        ("d_real", "mean |D(x)|, real (solid) / fake (dashed)"), ("d_loss", "D hinge loss (mean since last eval)"),
        ("g_loss", "G loss (mean since last eval)"),
        ("sat_real", "hinge-saturated: real D>1 (solid) / fake D<-1 (dashed)"),
        ("grad_align", "alignment of the critic's input gradients at the samples"),
        ("g_grad", "G gradient norm (mean since last eval)"),
    ]  # fmt: skip
    if not any(e.get("sat_real") is not None for r in results for e in r["history"]["eval"]):
        panels = panels[:7]  # results of older commits: no mechanism diagnostics
    fig, axes = plt.subplots(len(panels) // 4 + 1, 4, figsize=(17, 3.75 * (len(panels) // 4 + 1)))
    flat = list(axes.flat)
    seen: dict[str, list[float]] = defaultdict(list)
    for rs in groups.values():
        steps = sorted({e["step"] for r in rs for e in r["history"]["eval"]})
        color = None
        for ax, (field, _) in zip(flat, panels):
            for f, style in ((field, "-"), *(((PAIRED[field], "--"),) if field in PAIRED else ())):
                vals = np.array([[_at(r, s, f) for s in steps] for r in rs], dtype=float)
                if np.isnan(vals).all():
                    continue
                with warnings.catch_warnings():  # a step where no seed has the value (e.g. losses at step 0)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(vals, 0)
                    std = np.nanstd(vals, 0)
                (line,) = ax.plot(steps, mean, style, marker="o", ms=3, color=color,
                                  label=rs[0]["treatment_label"] if f == "fid" else None)  # fmt: skip
                color = line.get_color()
                seen[field] += list(mean)
                if len(rs) > 1:
                    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
    if real_pixel_std is not None:
        flat[2].axhline(real_pixel_std, color="k", lw=0.8, label="real images")
        flat[2].axhline(PIXEL_STD_FRACTION * real_pixel_std, color="r", ls=":", lw=0.8, label="collapse limit")
        flat[2].legend(fontsize=7)
    flat[3].axhline(TOP_CLASS_LIMIT, color="r", ls=":", lw=0.8, label="collapse limit")
    flat[3].set_ylim(0, 1.02)
    flat[3].legend(fontsize=7)
    for ax, (field, label) in zip(flat, panels):
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlabel("generator step", fontsize=8)
        ax.grid(alpha=0.3)
        if field in ("fid", "d_real", "g_grad"):
            _scale(ax, seen[field])
        if ax.get_yscale() == "linear":
            ax.ticklabel_format(axis="y", useOffset=False)
    handles, labels = flat[0].get_legend_handles_labels()
    for ax in flat[len(panels) :]:
        ax.axis("off")
    flat[-1].legend(handles, labels, loc="center", fontsize=8, title="treatment")
    fig.suptitle(f"{first['setup_label']}, batch {first['batch']}, {len(first['history']['eval'])} evaluations")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    plt.close(fig)


def _constants_figure(panels: list[tuple[str, list[dict], str]], title: str, xlabel: str, ylabel: str, path: Path):
    plt = _pyplot()
    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 2.2, 3.4 * rows), squeeze=False)
    handles, labels = [], []
    for ax, (label, series, x_key) in zip(axes.flat, panels):
        layers = list(series[0]["values"]) if series else []
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        values = []
        for layer in layers:
            ys = [p["values"][layer] for p in series]
            values += ys
            ax.plot([p[x_key] for p in series], ys, lw=1, marker="." if len(series) < 30 else None, label=layer)
        _scale(ax, values)
        if ax.get_yscale() == "linear":  # values near 1 read as 1.0004, not as an offset or 9.998×10⁻¹
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        if not labels:
            handles, labels = ax.get_legend_handles_labels()
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if labels:
        fig.legend(handles, labels, loc="center right", fontsize=7, title="layer")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / (4.6 * cols + 2.2), 0.9))
    save_png(fig, path, dpi=100)
    plt.close(fig)


def plot_constants(results: list[dict[str, Any]], setup: str, out: Path) -> list[str]:
    """Writes ``san_constants_<setup>.png`` and/or ``weight_constants_<setup>.png`` (first seed of each
    treatment) into ``out``; returns the file names written."""
    groups = _by_treatment(results, setup)
    san, other = [], []
    for rs in groups.values():
        h = rs[0]["history"]
        if h["san_constants"]:
            series = [{**p, "d_step": p.get("d_calls", p["step"])} for p in h["san_constants"]]
            reparam = rs[0]["treatment"].startswith("san-reparam")  # its constant is s of the raw weight, not ≈ 1
            san.append((rs[0]["treatment_label"] + ("\n(s = ‖W_raw‖₀,∞)" if reparam else ""), series, "d_step"))
        elif h["effective_constants"]:
            other.append((rs[0]["treatment_label"], h["effective_constants"], "step"))
    label = next(iter(groups.values()))[0]["setup_label"]
    written = []
    if san:
        _constants_figure(san, f"{label}:\nSAN's per-layer constant before each logged rescale",
                          "critic optimizer step (SAN rescale count)", "‖W‖₀,∞ (σ₁ dense) before rescale",
                          out / f"san_constants_{setup}.png")  # fmt: skip
        written.append(f"san_constants_{setup}.png")
    if other:
        _constants_figure(other, f"{label}:\n‖W_eff‖₀,∞ of the effective weights (what SAN would divide by)",
                          "generator step", "‖W_eff‖₀,∞ (σ₁ dense)", out / f"weight_constants_{setup}.png")  # fmt: skip
        written.append(f"weight_constants_{setup}.png")
    return written
