"""Hinge loss (Lim & Ye 2017; as in Miyato et al. 2018) and the WGAN-GP gradient penalty (Gulrajani et al. 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def d_hinge(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """``E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))]``."""
    return torch.relu(1.0 - real_out).mean() + torch.relu(1.0 + fake_out).mean()


def g_hinge(fake_out: Tensor) -> Tensor:
    """``−E[D(G(z))]``."""
    return -fake_out.mean()


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, y: Tensor | None, generator=None) -> Tensor:
    """``E[(‖∇_x̂ D(x̂)‖₂ − 1)²]`` at ``x̂ = εx + (1 − ε)G(z)``, ``ε ~ U[0, 1]`` per sample (labels of the real batch)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
    mix = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(mix, y)
    (grad,) = torch.autograd.grad(out.sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
