"""Fig. 2: fitting a Lipschitz-1 function with a one-hidden-layer ReLU net, with and without layer-wise SN.

``f(x) = w₂ᵀ ReLU(w₁x + b₁) + b₂`` with ``n`` hidden units. Without normalization the fit is near perfect;
with ``‖w₁‖ ≤ 1`` and ``‖w₂‖ ≤ 1`` (layer-wise spectral norm; both are vectors, so σ₁ is the Euclidean
norm) any two slopes differ by at most ``Σ_i |w₂ᵢ w₁ᵢ| ≤ ‖w₂‖‖w₁‖ ≤ 1``, so ``|x|`` and a ±1-slope zigzag
fit poorly although both are Lipschitz-1. (The paper's example, ``|f'(−∞) + f'(∞)| ≤ 1`` ruling out the
identity, concerns the unbounded line: on a bounded interval a single unit ``ReLU(x + c) − c`` is the identity.)
"""

from __future__ import annotations

import sys
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from benchmarks.paper import _common as C

TARGETS = {
    "zigzag (slopes ±1)": lambda x: (torch.remainder(x + 1, 2) - 1).abs() - 0.5,
    "f(x) = |x|": lambda x: x.abs(),
}


def fit(target, normalized: bool, hidden: int, steps: int, seed: int) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1)).double()
    if normalized:
        for i in (0, 2):
            spectral_norm(net[i], n_power_iterations=5)
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]
    y = target(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = (net(x) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return net.eval(), losses


def max_slope(net: nn.Module) -> float:
    xs = torch.linspace(-4, 4, 4001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        ys = net(xs).squeeze(1)
    return float(((ys[1:] - ys[:-1]) / (xs[1:, 0] - xs[:-1, 0])).abs().max())


def main(argv: Optional[list[str]] = None) -> dict:
    p = C.parser("fig2_lipschitz_fit", __doc__)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="Adam steps (default 2000, 60 quick)")
    args = p.parse_args(argv)
    run = C.Run("fig2", "fig2_lipschitz_fit", args, argv)
    steps = args.steps or (60 if args.quick else 2000)
    plt = C.pyplot()
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(11, 3.8))
    rows, data = [], {}
    for ax, (name, target) in zip(axes, TARGETS.items()):
        x = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]
        xs = torch.linspace(-3.5, 3.5, 701, dtype=torch.float64)[:, None]
        ax.scatter(x[:, 0], target(x)[:, 0], s=10, color="tab:blue", label="samples of a Lipschitz-1 f")
        for normalized, color in ((False, "tab:green"), (True, "tab:red")):
            net, losses = fit(target, normalized, args.hidden, steps, args.seed)
            label = "layer-wise SN" if normalized else "no normalization"
            with torch.no_grad():
                ax.plot(xs[:, 0], net(xs)[:, 0], color=color, label=label)
            rows.append([name, label, losses[-1], max_slope(net)])
            data[f"{name} / {label}"] = {"final_mse": losses[-1], "max_slope": rows[-1][-1]}
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"Fig. 2: one hidden layer ({args.hidden} ReLU units), {steps} Adam steps", fontsize=11)
    body = (
        "Full-batch fit of 61 samples on [−3, 3], Adam 1e-2, float64; `max |slope|` of the learned function on "
        "[−4, 4] (≤ 1 is guaranteed with layer-wise SN).\n\n"
        + C.md_table(["target", "critic", "final MSE", "max |slope|"], rows)
    )
    return run.finish("Fig. 2 — layer-wise normalization restricts Lipschitz-1 fits", body, {"fits": data}, fig)


if __name__ == "__main__":
    main()
    sys.exit(0)
