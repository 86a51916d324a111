"""Eq. 9: the compensation gain g for a random fraction r of kernels, and the measured under-estimate.

``g(r) = H(m·n) / H(⌈m·n·r⌉)`` (``san_core.compensation_gain``; ``H`` harmonic numbers) is the ratio of
expected maxima of i.i.d. exponential draws; the paper quotes g ≈ 1.2 for r = 25 % and m·n = 64². Measured
here: for real conv weights, the mean over random subsets of ``max_{subset} ‖F{w_ij}‖_∞ / ‖W‖₀,∞`` (the
subset under-estimate that g should undo) against ``1/g(r)``. Weights: the 64→64 convs of a fully trained
CIFAR-10 ResNet-56 *classifier* (m·n = 64², real trained weights), the 64→64 convs of the ResNet critic
trained briefly without normalization (Fig. 5's run), and random (Xavier) 64→64 kernels.
"""

from __future__ import annotations

import math
import sys
from typing import Optional

import torch
from torch import nn

import san_core
from benchmarks.gan.classifier import load_classifier
from benchmarks.gan.feature_nets import DEFAULT_CLASSIFIER
from benchmarks.paper import _common as C
from benchmarks.paper._gan import cached_critic
from benchmarks.paper.fig5_channel_sparsity import config
from san_core.diagnostics import kernel_fourier_maxima

RATIOS = (0.02, 0.05, 0.1, 0.25, 0.5, 0.75)


def sources(args) -> dict[str, list[tuple[torch.Tensor, tuple[int, int], int]]]:
    """``{source: [(weight, input size, stride)]}`` of square 64→64 (quick: 8→8) convs."""
    ch = 8 if args.quick else 64
    out: dict[str, list] = {}
    classifier = DEFAULT_CLASSIFIER.parent / "resnet56-4bfd9763.th"
    if classifier.is_file() and not args.quick:
        model = load_classifier(classifier)
        out["trained classifier ResNet-56 (layer3)"] = [
            (m.weight.detach(), (8, 8), 1) for n, m in model.layer3.named_modules()
            if isinstance(m, nn.Conv2d) and m.weight.shape[:2] == (64, 64) and m.stride == (1, 1)
        ]  # fmt: skip
    critic, _ = cached_critic(config(args), "none")
    sizes = {"blocks.1": (16, 16), "blocks.2": (8, 8), "blocks.3": (8, 8)}
    out["critic trained briefly, no normalization"] = [
        (m.weight.detach(), sizes[n.rsplit(".", 1)[0]], 1) for n, m in critic.named_modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and n.rsplit(".", 1)[0] in sizes
    ]  # fmt: skip
    gen = torch.Generator().manual_seed(args.seed)
    bound = math.sqrt(6 / (2 * ch * 9)) * math.sqrt(2)
    out["random (Xavier, gain √2)"] = [
        ((torch.rand(ch, ch, 3, 3, generator=gen) * 2 - 1) * bound, (8, 8), 1) for _ in range(4)
    ]
    return out


def subset_ratios(maxima: torch.Tensor, ratio: float, draws: int, gen: torch.Generator) -> torch.Tensor:
    """``max`` over ``draws`` random subsets of ``⌈m·n·r⌉`` kernel maxima, divided by the full maximum."""
    flat = maxima.flatten()
    k = san_core.subset_size(flat.numel(), ratio)
    idx = torch.rand(draws, flat.numel(), generator=gen).topk(k, dim=1).indices
    return flat[idx].amax(dim=1) / flat.max()


def main(argv: Optional[list[str]] = None) -> dict:
    p = C.parser("eq9_gain", __doc__)
    p.add_argument("--draws", type=int, default=None, help="random subsets per layer and ratio (default 2000)")
    p.add_argument("--steps", type=int, default=None, help="training steps of the critic (as fig5)")
    p.add_argument("--d-ch", type=int, default=64)
    p.add_argument("--g-ch", type=int, default=64)
    args = p.parse_args(argv)
    run = C.Run("eq9", "eq9_gain", args, argv)
    draws = args.draws or (50 if args.quick else 2000)
    gen = torch.Generator().manual_seed(args.seed)
    data: dict = {"gain_64sq": {r: san_core.compensation_gain(64**2, r) for r in RATIOS}, "sources": {}}
    checks = []
    for name, layers in sources(args).items():
        per_ratio: dict[float, list[float]] = {r: [] for r in RATIOS}
        for weight, size, stride in layers:
            maxima = kernel_fourier_maxima(weight.double(), size, stride=stride)
            full = san_core.conv_constant(weight.double(), size, stride=stride)
            checks.append(abs(float(maxima.max() - full)) / float(full))
            sub_gen = torch.Generator().manual_seed(1)  # one draw, the way san_core draws it
            chosen = torch.randperm(maxima.numel(), generator=torch.Generator().manual_seed(1))
            kept = chosen[: san_core.subset_size(maxima.numel(), 0.25)]
            ours = maxima.flatten()[kept].max()
            theirs = san_core.conv_constant(weight.double(), size, filter_ratio=0.25, gain=1.0, generator=sub_gen)
            checks.append(abs(float(ours - theirs)) / float(theirs))
            for r in RATIOS:
                per_ratio[r].append(float(subset_ratios(maxima, r, draws, gen).mean()))
        mn = layers[0][0].shape[0] * layers[0][0].shape[1]
        data["sources"][name] = {
            "layers": len(layers), "m_n": mn,
            "mean_ratio": {r: sum(v) / len(v) for r, v in per_ratio.items()},
            "one_over_g": {r: 1 / san_core.compensation_gain(mn, r) for r in RATIOS},
        }  # fmt: skip
    data["max_rel_diff_vs_san_core"] = max(checks)
    plt = C.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    rs = [i / 200 for i in range(1, 201)]
    ax1.plot(rs, [san_core.compensation_gain(64**2, r) for r in rs], color="black")
    ax1.scatter([0.25], [san_core.compensation_gain(64**2, 0.25)], color="tab:red", zorder=3)
    ax1.set(xlabel="ratio r", ylabel="g (Eq. 9)", title="optimal g for m·n = 64²", ylim=(1, 3))
    for name, res in data["sources"].items():
        ax2.plot(RATIOS, list(res["mean_ratio"].values()), marker="o", label=name)
    ax2.plot(rs, [1 / san_core.compensation_gain(64**2, r) for r in rs], "k--", label="1/g (exponential model)")
    ax2.set(xlabel="ratio r", ylabel="mean subset max / full max", title="subset under-estimate")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    rows = [["g(r), m·n = 64² (Eq. 9)", "", *[data["gain_64sq"][r] for r in RATIOS]]]
    rows += [["1/g(r)", "", *[1 / data["gain_64sq"][r] for r in RATIOS]]]
    for name, res in data["sources"].items():
        rows.append([f"mean subset/full: {name}", f"{res['layers']} × m·n={res['m_n']}", *res["mean_ratio"].values()])
        if res["m_n"] != 64**2:
            rows.append([f"↳ 1/g(r) at m·n={res['m_n']}", "", *res["one_over_g"].values()])
        rows.append([f"↳ empirical optimal g = full/subset: {name}", "", *[1 / v for v in res["mean_ratio"].values()]])
    body = (
        f"{draws} random subsets per layer and ratio; per-kernel maxima on the layer's map (circular), float64. "
        f"Largest relative difference of these maxima and subset draws vs `san_core.conv_constant`: "
        f"{data['max_rel_diff_vs_san_core']:.1e}.\n\n" + C.md_table(["quantity", "layers", *map(str, RATIOS)], rows)
    )
    return run.finish("Eq. 9 — compensation gain vs subset ratio", body, data, fig)


if __name__ == "__main__":
    main()
    sys.exit(0)
