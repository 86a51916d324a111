"""A SPADE-like discriminator and generator, written from scratch the way NVlabs/SPADE builds them.

D: ``NLayer`` stacks ``model0 … model{n}`` of 4×4 convs with padding 2 (``ceil((kw-1)/2)``); ``model0``
and the last block hold a plain conv; the blocks between hold ``Sequential(spectral_norm(conv),
InstanceNorm2d(affine=False))`` with the conv's bias removed (SPADE's ``norm_D=spectralinstance``); channels
double up to 512, the penultimate block has stride 1. ``Multiscale`` runs ``num_D`` stacks on 3×3/2
average-pooled inputs and returns every stack's intermediate features. G: hook-style spectral-norm convs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm


def spectral_instance(conv: nn.Conv2d) -> nn.Sequential:
    """SPADE's ``get_nonspade_norm_layer(opt, "spectralinstance")`` applied to ``conv``."""
    conv = spectral_norm(conv)
    delattr(conv, "bias")
    conv.register_parameter("bias", None)
    return nn.Sequential(conv, nn.InstanceNorm2d(conv.out_channels, affine=False))


class NLayer(nn.Module):
    """PatchGAN stack: first conv plain, middle convs SN+IN, last conv plain (1 output channel)."""

    def __init__(self, in_channels: int, ndf: int = 8, n_layers: int = 4) -> None:
        super().__init__()
        kw, padw = 4, 2
        nf = ndf
        blocks: list[list[nn.Module]] = [[nn.Conv2d(in_channels, nf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2)]]
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            blocks.append(
                [spectral_instance(nn.Conv2d(nf_prev, nf, kw, stride=stride, padding=padw)), nn.LeakyReLU(0.2)]
            )
        blocks.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        for i, block in enumerate(blocks):
            self.add_module(f"model{i}", nn.Sequential(*block))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for block in self.children():
            x = block(x)
            features.append(x)
        return features


class Multiscale(nn.Module):
    """``num_D`` NLayer stacks; stack ``k`` sees the input average-pooled ``k`` times."""

    def __init__(self, in_channels: int = 5, ndf: int = 8, n_layers: int = 4, num_D: int = 2) -> None:
        super().__init__()
        for i in range(num_D):
            self.add_module(f"discriminator_{i}", NLayer(in_channels, ndf, n_layers))

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        out = []
        for stack in self.children():
            out.append(stack(x))
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return out


class Generator(nn.Module):
    """A small label-to-image generator with hook-style spectral norm on its convs."""

    def __init__(self, label_nc: int = 2, ngf: int = 8) -> None:
        super().__init__()
        self.head = spectral_norm(nn.Conv2d(label_nc, ngf, 3, padding=1))
        self.body = spectral_norm(nn.Conv2d(ngf, ngf, 3, padding=1))
        self.out = nn.Conv2d(ngf, 3, 3, padding=1)

    def forward(self, label: Tensor) -> Tensor:
        x = F.leaky_relu(self.head(label), 0.2)
        return torch.tanh(self.out(F.leaky_relu(self.body(x), 0.2)))


def d_loss(D: nn.Module, G: nn.Module, label: Tensor, image: Tensor) -> Tensor:
    """SPADE's hinge D loss on the concatenated fake/real batch (last feature of each stack)."""
    with torch.no_grad():
        fake = G(label)
    preds = D(torch.cat([torch.cat([label, fake], 1), torch.cat([label, image], 1)], 0))
    loss = image.new_zeros(())
    for feats in preds:
        fake_pred, real_pred = feats[-1].chunk(2)
        loss = loss + F.relu(1 + fake_pred).mean() + F.relu(1 - real_pred).mean()
    return loss


def g_loss(D: nn.Module, G: nn.Module, label: Tensor) -> Tensor:
    """SPADE's hinge G loss."""
    preds = D(torch.cat([label, G(label)], 1))
    return -sum(feats[-1].mean() for feats in preds)
