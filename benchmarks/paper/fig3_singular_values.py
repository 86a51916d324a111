"""Fig. 3: per-layer top singular value of each conv of a ResNet critic — exact vs SN's estimate vs SAN.

Exact: Sedghi et al.'s Fourier method (``san_core.diagnostics.conv_singular_value``, circular padding);
SN's estimate: ``σ₁(W.reshape(out, -1))``, what ``spectral_norm``'s power iteration converges to; SAN:
``‖W‖₀,∞`` (``san_core.conv_constant``). The paper reports SN's estimate ≈ 4× below the truth on a
trained ResNet critic. Weights shown: (a) the paper's ResNet critic (ch=128) at its SNGAN initialization,
(b, c) a reduced-width ResNet critic trained briefly on CIFAR-10 with spectral norm (the effective,
normalized weights) and without normalization (same run as Fig. 5), (d) a fully trained CIFAR-10 ResNet-20
*classifier* (real trained conv weights, not a critic; zero padding in the model, circular assumed here).
"""

from __future__ import annotations

import statistics
import sys
from typing import Optional

import torch

from benchmarks.gan.classifier import load_classifier
from benchmarks.gan.feature_nets import DEFAULT_CLASSIFIER
from benchmarks.gan.models_resnet import ResNetCritic
from benchmarks.paper import _common as C
from benchmarks.paper._gan import cached_critic
from benchmarks.paper.fig5_channel_sparsity import config
from san_core import to_circular_padding_
from san_core.inspect import inspect_critic


def panels(args) -> dict[str, list[dict]]:
    """``{panel title: [per-conv-layer dict]}``."""
    out = {}
    torch.manual_seed(args.seed)
    ch = 8 if args.quick else 128
    init = ResNetCritic(ch=ch)
    to_circular_padding_(init)
    out[f"(a) ResNet critic ch={ch}, SNGAN init (random)"] = init
    cfg = config(args)
    for treatment, label in (("sn", "with spectral norm"), ("none", "without normalization")):
        critic, _ = cached_critic(cfg, treatment)
        out[f"({'b' if treatment == 'sn' else 'c'}) ResNet critic ch={cfg.d_ch}, {cfg.steps} steps {label}"] = critic
    if DEFAULT_CLASSIFIER.is_file() and not args.quick:
        out["(d) trained CIFAR-10 classifier ResNet-20 (not a critic)"] = load_classifier(DEFAULT_CLASSIFIER)
    rows = {}
    for title, model in out.items():
        report = inspect_critic(model, [torch.zeros(1, 3, 32, 32)])
        rows[title] = [
            {"layer": r.name, "size": r.input_size, "exact": r.exact_sigma, "sn": r.sn_estimate, "san": r.san_constant}
            for r in report.layers
            if r.type != "Linear"
        ]
    return rows


def main(argv: Optional[list[str]] = None) -> dict:
    p = C.parser("fig3_singular_values", __doc__)
    p.add_argument("--steps", type=int, default=None, help="training steps of (b), (c) (default 100, 3 quick)")
    p.add_argument("--d-ch", type=int, default=64, help="width of the trained critics (b), (c)")
    p.add_argument("--g-ch", type=int, default=64, help="CNN generator width for (b), (c)")
    args = p.parse_args(argv)
    run = C.Run("fig3", "fig3_singular_values", args, argv)
    data = panels(args)
    plt = C.pyplot()
    fig, axes = plt.subplots(len(data), 1, figsize=(11, 2.6 * len(data)), squeeze=False)
    summary, body = [], ""
    for ax, (title, rows) in zip(axes[:, 0], data.items()):
        xs = range(len(rows))
        ax.bar([x - 0.27 for x in xs], [r["exact"] for r in rows], 0.27, color="black", label="exact σ₁ (Sedghi)")
        ax.bar(list(xs), [r["sn"] for r in rows], 0.27, color="tab:red", label="SN estimate σ₁(W_mat)")
        ax.bar([x + 0.27 for x in xs], [r["san"] for r in rows], 0.27, color="tab:blue", label="SAN ‖W‖₀,∞")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(list(xs), [r["layer"] for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("gain")
        ratios = [r["exact"] / r["sn"] for r in rows]
        below = sum(r["san"] <= r["exact"] * (1 + 1e-5) for r in rows)
        summary.append(
            [title, len(rows), statistics.median(ratios), min(ratios), max(ratios),
             statistics.median(r["exact"] / r["san"] for r in rows), f"{below}/{len(rows)}"]
        )  # fmt: skip
        body += f"\n### {title}\n\n" + C.md_table(
            ["layer", "input", "exact σ₁", "SN estimate", "SAN ‖W‖₀,∞", "exact / SN", "exact / SAN"],
            [[r["layer"], "×".join(map(str, r["size"])), r["exact"], r["sn"], r["san"], r["exact"] / r["sn"],
              r["exact"] / r["san"]] for r in rows],
        )  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", ncol=3, fontsize=8)
    head = (
        "Per conv layer: exact top singular value (circular padding), spectral norm's reshaped-matrix estimate and "
        "the SAN constant. Expected orderings: SN ≤ exact ≤ √(k·k)·SN and SAN (1-sparse gain) ≤ exact for stride-1 "
        "layers; for strided layers SAN's default `stride_mode='paper'` is the full-resolution value and may exceed "
        "σ₁ of the strided operator.\n\n"
        + C.md_table(["weights", "convs", "median exact/SN", "min", "max", "median exact/SAN", "SAN ≤ exact"], summary)
    )
    return run.finish(
        "Fig. 3 — top singular value per conv layer", head + body, {"panels": data, "summary": summary}, fig
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
