"""Hinge loss (Lim & Ye 2017; as in Miyato et al. 2018), the non-saturating loss (Goodfellow et al. 2014; a diagnosis
ablation here) and the WGAN-GP gradient penalty (Gulrajani et al. 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def d_hinge(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """``E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))]``."""
    return torch.relu(1.0 - real_out).mean() + torch.relu(1.0 + fake_out).mean()


def g_hinge(fake_out: Tensor) -> Tensor:
    """``−E[D(G(z))]``."""
    return -fake_out.mean()


def d_ns(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """``E[softplus(−D(x))] + E[softplus(D(G(z)))]`` (= −log σ(D(x)) − log(1 − σ(D(G(z)))))."""
    return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()


def g_ns(fake_out: Tensor) -> Tensor:
    """``E[softplus(−D(G(z)))]`` (= −log σ(D(G(z))))."""
    return F.softplus(-fake_out).mean()


LOSSES = {"hinge": (d_hinge, g_hinge), "ns": (d_ns, g_ns)}


def get_losses(name: str):  # type: ignore[no-untyped-def]
    """``(d_loss, g_loss)`` of ``"hinge"`` or ``"ns"``."""
    if name not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


def hinge_saturation(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """``[P(D(x) > 1), P(D(G(z)) < −1)]`` over the batch: the samples whose hinge term, and so whose gradient to the
    critic, is zero (for the non-saturating loss: where the hinge's would be)."""
    return torch.stack([(real_out.detach() > 1).float().mean(), (fake_out.detach() < -1).float().mean()])


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, y: Tensor | None, generator=None) -> Tensor:
    """``E[(‖∇_x̂ D(x̂)‖₂ − 1)²]`` at ``x̂ = εx + (1 − ε)G(z)``, ``ε ~ U[0, 1]`` per sample (labels of the real batch)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
    mix = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(mix, y)
    (grad,) = torch.autograd.grad(out.sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
