"""Fig. 4: a GAN critic normalized per layer by its exact σ₁ vs by SN's estimate vs by SAN, same init.

The paper (WGAN, CIFAR-10): exact per-layer spectral normalization does not converge (weights become tiny,
gradients vanish), the approximate one of Miyato et al. trains. Here the SNGAN standard-CNN critic (reduced
width for CPU, circular padding) and a CNN generator start from the same seed and data order; treatments
(``benchmarks.paper._gan``): ``sn`` (torch spectral_norm), ``sn_exact`` (``W ← W/σ₁(W)`` after each critic
step), ``san`` (``W ← W/‖W‖₀,∞``), optionally ``sn_reshaped`` and ``none``. Quality: classifier-FID
(CIFAR-10 ResNet-20 features; *not* FID) of generator samples vs real training images, at a few steps.
"""

from __future__ import annotations

import math
import sys
from typing import Optional

import torch

from benchmarks.gan import data as gdata
from benchmarks.gan import metrics
from benchmarks.gan.feature_nets import make_feature_net
from benchmarks.paper import _common as C
from benchmarks.paper._gan import CACHE, TREATMENTS, GanConfig, train

LABELS = {
    "none": "no normalization",
    "sn": "SN (torch spectral_norm, reshaped estimate)",
    "sn_reshaped": "W / σ₁(W_mat) after each step",
    "sn_exact": "exact per-layer σ₁ (Sedghi) after each step",
    "san": "SAN ‖W‖₀,∞ after each step",
}


def main(argv: Optional[list[str]] = None) -> dict:
    p = C.parser("fig4_exact_vs_sn", __doc__)
    p.add_argument("--steps", type=int, default=None, help="G steps = D steps (default 120, 3 quick)")
    p.add_argument("--treatments", default="sn,sn_exact,san", help=f"comma list of {','.join(TREATMENTS)}")
    p.add_argument(
        "--loss",
        default="wgan",
        choices=["wgan", "hinge"],
        help="critic loss (paper: WGAN); hinge writes paper_fig4_hinge.*",
    )
    p.add_argument("--d-ch", type=int, default=32, help="critic width (SNGAN: 64)")
    p.add_argument("--g-ch", type=int, default=64, help="generator width (SNGAN: 512)")
    p.add_argument("--eval-n", type=int, default=None, help="samples per classifier-FID (default 500)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default steps/4)")
    args = p.parse_args(argv)
    run = C.Run("fig4" if args.loss == "wgan" else f"fig4_{args.loss}", "fig4_exact_vs_sn", args, argv)
    treatments = args.treatments.split(",")
    if any(t not in TREATMENTS for t in treatments):
        p.error(f"--treatments: expected a comma list of {TREATMENTS}, got {args.treatments!r}")
    steps = args.steps or (3 if args.quick else 120)
    eval_every = args.eval_every or (steps if args.quick else max(1, steps // 4))
    cfg = GanConfig(
        critic="cnn", d_ch=4 if args.quick else args.d_ch, g_ch=8 if args.quick else args.g_ch,
        batch=8 if args.quick else 32, steps=steps, loss=args.loss, seed=args.seed,
        data="fake:256" if args.quick else None, eval_every=eval_every,
        eval_n=args.eval_n or (32 if args.quick else 500),
    )  # fmt: skip
    images = gdata.load_cifar10(cfg.data)
    net = make_feature_net("random" if args.quick else "classifier")
    n_ref = 64 if args.quick else 2048
    ref = metrics.reference_stats(net, images.x, images.name, n_ref, CACHE, torch.device("cpu"))

    def on_eval(step: int, gen: torch.nn.Module) -> dict:
        kw = dict(z_dim=gen.z_dim, num_classes=0, device=torch.device("cpu"), batch=250)
        return metrics.evaluate_generator(net, gen, ref, cfg.eval_n, **kw)

    results = {}
    for t in treatments:
        print(f"[fig4] training {t} ({steps} steps)", file=sys.stderr, flush=True)
        out = train(cfg, t, on_eval)
        results[t] = {"history": out["history"], "layers": out["treatment"].report()}
    plt = C.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    rows = []
    for t, res in results.items():
        h = res["history"]
        gap = [r - f for r, f in zip(h["d_real"], h["d_fake"])]
        axes[0].plot(h["step"], h["d_loss"], label=LABELS[t])
        axes[1].plot(h["step"], gap, label=LABELS[t])
        axes[2].plot([e["step"] for e in h["evals"]], [e["fid"] for e in h["evals"]], marker="o", label=LABELS[t])
        tail = max(1, len(h["step"]) // 10)
        lip = math.prod(layer["exact"] for layer in res["layers"])
        track = max(abs(layer["tracked"] - layer["exact"]) / layer["exact"] for layer in res["layers"])
        rows.append(
            [LABELS[t], sum(h["d_loss"][-tail:]) / tail, sum(gap[-tail:]) / tail, h["evals"][0]["fid"],
             h["evals"][-1]["fid"], min(e["fid"] for e in h["evals"]), lip, track, h["seconds"]]
        )  # fmt: skip
    for ax in axes[:2]:
        ax.set_yscale("symlog", linthresh=1e-2)
    axes[0].set(xlabel="step", ylabel=f"critic loss ({cfg.loss})", title="critic loss")
    axes[1].set(xlabel="step", ylabel="E D(real) − E D(fake)", title="critic's real/fake gap")
    axes[2].set(xlabel="step", ylabel=net.fid_name, title=f"sample quality ({cfg.eval_n} samples)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    columns = ["treatment", "critic loss (last 10 %)", "real−fake gap (last 10 %)"]
    columns += [f"{net.fid_name} at step {cfg.eval_every}", "final", "best", "Π exact σ₁ of D's layers (end)"]
    columns += ["σ tracker rel. err", "train s"]
    body = (
        f"SNGAN CNN critic ch={cfg.d_ch} (circular padding), CNN generator ch={cfg.g_ch}, batch {cfg.batch}, "
        f"{steps} steps, one D step per G step, {cfg.loss} critic loss, Adam {cfg.lr} β={cfg.betas}, seed {cfg.seed}, "
        f"data {cfg.data or 'CIFAR-10 train'}. {net.fid_name} against {len(ref['mu'])}-d statistics of "
        f"{int(ref['n'])} real training images; lower is better.\n\n"
        + C.md_table(columns, rows)
        + "\n`Π exact σ₁`: product of the exact per-layer top singular values of the critic's effective weights "
        "at the end — an upper bound of its Lipschitz constant (LeakyReLU is 1-Lipschitz). `σ tracker rel. err`: "
        "largest relative gap between the persistent power iteration used for `sn_exact` and the exact σ₁.\n"
    )
    data = {"config": cfg.__dict__, "results": results, "summary": rows, "metric": net.fid_name}
    return run.finish("Fig. 4 — exact per-layer σ₁ vs SN's estimate vs SAN", body, data, fig)


if __name__ == "__main__":
    main()
    sys.exit(0)
