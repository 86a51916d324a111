"""The three CIFAR-10 setups of the paper's Table 1: SNGAN standard CNN, SNGAN ResNet, BigGAN-style conditional."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn
from torch.nn.utils import parametrizations

from .models_cnn import CNNCritic, CNNGenerator
from .models_resnet import ResNetCritic, ResNetGenerator


@dataclass(frozen=True)
class Setup:
    """Models and optimizer settings of one setup; ``g_ch``/``d_ch`` default to the paper's widths."""

    key: str
    label: str
    num_classes: int
    betas: tuple[float, float]
    g_ch: int
    d_ch: int
    z_dim: int = 128
    lr: float = 2e-4

    def make_generator(self) -> nn.Module:
        if self.key == "cnn":
            return CNNGenerator(self.z_dim, ch=self.g_ch)
        if self.key == "resnet":
            return ResNetGenerator(self.z_dim, self.g_ch)
        g = ResNetGenerator(self.z_dim, self.g_ch, num_classes=self.num_classes, init="n02")
        for layer in list(g.modules()):  # BigGAN normalizes its generator too (same for every treatment)
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                parametrizations.spectral_norm(layer)
        return g

    def make_critic(self) -> nn.Module:
        if self.key == "cnn":
            return CNNCritic(ch=self.d_ch)
        if self.key == "resnet":
            return ResNetCritic(self.d_ch)
        return ResNetCritic(self.d_ch, num_classes=self.num_classes, init="n02")

    def describe(self) -> str:
        return f"{self.label} (G {self.g_ch} ch, D {self.d_ch} ch)"


SETUPS = {
    "cnn": Setup("cnn", "SNGAN standard CNN", 0, (0.5, 0.9), g_ch=512, d_ch=64),
    "resnet": Setup("resnet", "SNGAN ResNet", 0, (0.5, 0.9), g_ch=256, d_ch=128),
    # BigGAN-PyTorch's CIFAR config (ch 64 → 4·64 = 256 in G and D), β₁ = 0.5 as in the paper, β₂ = 0.999.
    "biggan": Setup("biggan", "BigGAN-style conditional", 10, (0.5, 0.999), g_ch=256, d_ch=256),
}


def get_setup(key: str, g_ch: Optional[int] = None, d_ch: Optional[int] = None) -> Setup:
    if key not in SETUPS:
        raise ValueError(f"setup: expected one of {sorted(SETUPS)}, got {key!r}")
    base = SETUPS[key]
    return Setup(base.key, base.label, base.num_classes, base.betas, g_ch or base.g_ch, d_ch or base.d_ch)
