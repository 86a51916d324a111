"""Fig. 5: histogram of the channel norms of a ResNet critic's last features over 2048 real CIFAR-10 images.

The paper's critic was trained to convergence without normalization; here a ResNet critic (reduced width
for CPU) is trained briefly without normalization (hinge, Adam 2e-4, β = (0.5, 0.9), one D step per G step,
circular padding) and compared with the same critic at its initialization. Features: ``ReLU(blocks(x))``,
the input of the critic's sum pooling and dense layer, one ``8×8`` map per channel. Also lists, per layer,
the fraction of zero channels at its input (``san_core.inspect``), i.e. where SAN's 1-sparse view holds.
"""

from __future__ import annotations

import sys
from typing import Optional

import torch
from torch import nn

from benchmarks.gan import data as gdata
from benchmarks.paper import _common as C
from benchmarks.paper._gan import GanConfig, cached_critic, make_models
from san_core import channel_sparsity
from san_core.inspect import inspect_critic


def config(args) -> GanConfig:
    if args.quick:
        return GanConfig(
            critic="resnet", d_ch=8, g_ch=8, batch=8, steps=args.steps or 3, data="fake:256", seed=args.seed
        )
    return GanConfig(critic="resnet", d_ch=args.d_ch, g_ch=args.g_ch, batch=32, steps=args.steps or 100, seed=args.seed)


def real_images(cfg: GanConfig, n: int) -> torch.Tensor:
    """``n`` training images in [-1, 1] from a fixed permutation (seed 0)."""
    images = gdata.load_cifar10(cfg.data)
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n]
    return images.batch(idx, torch.device("cpu"))[0]


@torch.no_grad()
def last_features(critic: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    critic.eval()
    return torch.cat([torch.relu(critic.blocks(part)) for part in x.split(batch)])


def main(argv: Optional[list[str]] = None) -> dict:
    p = C.parser("fig5_channel_sparsity", __doc__)
    p.add_argument("--steps", type=int, default=None, help="critic training steps (default 100, 3 quick)")
    p.add_argument("--d-ch", type=int, default=64, help="critic width (paper: 128)")
    p.add_argument("--g-ch", type=int, default=64, help="CNN generator width (SNGAN: 512)")
    p.add_argument("--images", type=int, default=None, help="real images (default 2048, 64 quick)")
    args = p.parse_args(argv)
    run = C.Run("fig5", "fig5_channel_sparsity", args, argv)
    cfg = config(args)
    n_images = args.images or (64 if args.quick else 2048)
    x = real_images(cfg, n_images)
    trained, hist = cached_critic(cfg, "none")
    _, init = make_models(cfg)
    results, rows = {}, []
    for label, critic in (("trained (no normalization)", trained), ("initialization", init)):
        stats = channel_sparsity(last_features(critic, x))
        results[label] = stats
        nonzero = stats.norms[stats.norms > 0]
        rows.append(
            [label, f"{100 * stats.mean_zero_fraction:.1f} %", f"{100 * stats.zeros / stats.norms.numel():.1f} %",
             float(nonzero.median()) if nonzero.numel() else 0.0, float(stats.norms.max())]
        )  # fmt: skip
    report = inspect_critic(trained, x.split(256))
    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, (label, stats) in zip(axes, results.items()):
        norms = stats.norms.flatten()
        ax.hist(norms.numpy(), bins=60, color="tab:blue" if "trained" in label else "tab:gray")
        ax.set_title(f"{label}: {100 * stats.mean_zero_fraction:.0f} % zero channels", fontsize=10)
        ax.set_xlabel("channel norm ‖x_i‖ (8×8 map)")
        ax.set_ylabel(f"count over {n_images} images × {stats.norms.shape[1]} channels")
        ax.set_yscale("log")
    fig.suptitle(f"Fig. 5: last-feature channel norms, ResNet critic ch={cfg.d_ch}, {cfg.steps} steps", fontsize=11)
    body = (
        f"ResNet critic (ch={cfg.d_ch}; the paper's is 128), CNN generator ch={cfg.g_ch}, batch {cfg.batch}, "
        f"{cfg.steps} hinge steps without normalization (final D loss {hist['d_loss'][-1]:.3f}), "
        f"data {cfg.data or 'CIFAR-10 train (shared JPEG tarball)'}; {n_images} real training images.\n\n"
        + C.md_table(["critic", "mean zero-channel fraction per image", "zero norms", "median non-zero", "max"], rows)
        + "\nPer layer of the trained critic (`san_core.inspect_critic` on the same images):\n\n"
        + report.table()
    )
    data = {
        "config": cfg.__dict__,
        "summary": rows,
        "histograms": {k: {"counts": v.counts.tolist(), "edges": v.edges.tolist()} for k, v in results.items()},
        "zero_fraction": {k: v.mean_zero_fraction for k, v in results.items()},
        "layers": report.to_dict()["layers"],
    }
    return run.finish("Fig. 5 — channel sparsity of a critic's last features", body, data, fig)


if __name__ == "__main__":
    main()
    sys.exit(0)
