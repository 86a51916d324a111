"""What the critic does at one evaluation, on fixed inputs (issue 12's collapse diagnosis).

On the 256 fixed real probe images ``x`` and 256 samples ``G(z)`` from fixed noise, G and D in eval mode (spectral
norm's power iteration does not advance, no random stream of the run is touched):

- ``d_real`` / ``d_fake``: mean ``|D(x)|`` / ``|D(G(z))|``, the scale the hinge's margin of 1 is compared with;
- ``d_gap``: ``mean D(x) − mean D(G(z))``, how far the critic separates the two (in the units of its output);
- ``grad_align``: ``‖(1/n) Σᵢ uᵢ‖₂`` with ``uᵢ = ∇ₓD(G(zᵢ)) / ‖∇ₓD(G(zᵢ))‖``: 1 when the critic pushes every
  sample in the same image-space direction (the generator's update then moves all samples alike, toward one
  image), ≈ ``1/√n`` for unrelated directions. Only the input gradient is taken: no parameter's ``.grad`` changes.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn


def gradient_alignment(critic: nn.Module, fake: Tensor, y: Optional[Tensor]) -> float:
    """``‖mean of the unit input gradients‖`` (module docstring) of ``critic`` at the images ``fake``."""
    x = fake.detach().requires_grad_(True)
    with torch.enable_grad():
        out = critic(x, y) if y is not None else critic(x)
        (grad,) = torch.autograd.grad(out.sum(), x)
    g = grad.flatten(1).double()
    unit = g / g.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return float(unit.mean(0).norm())


def critic_scale(run: Any, probe: tuple[Tensor, ...], seed: int = 54321) -> dict[str, float]:
    """``d_real``, ``d_fake``, ``d_gap``, ``grad_align`` of ``run`` (a :class:`benchmarks.gan.train.Run`) on
    ``probe`` and as many samples from fixed noise ``seed``."""
    n, s = probe[0].shape[0], run.spec.setup
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, s.z_dim, generator=gen).to(run.device)
    y = (torch.arange(n) % s.num_classes).to(run.device) if s.num_classes else None
    flags = {m: m.training for m in [*run.G.modules(), *run.D.modules()]}
    run.G.eval()
    run.D.eval()
    try:
        with torch.no_grad():
            fake = run.G(z, y)
            d_real = run.D(probe[0], probe[1] if s.num_classes else None)
            d_fake = run.D(fake, y)
        align = gradient_alignment(run.D, fake, y)
    finally:
        for m, flag in flags.items():
            m.training = flag
    return {"d_real": float(d_real.abs().mean()), "d_fake": float(d_fake.abs().mean()),
            "d_gap": float(d_real.mean() - d_fake.mean()), "grad_align": align}  # fmt: skip
