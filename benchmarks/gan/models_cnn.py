"""SNGAN "standard CNN" generator and critic for 32×32 images (Miyato et al. 2018, Table 3, CIFAR-10)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CNNGenerator(nn.Module):
    """z ∈ R^128 → dense 4·4·512 → three 4×4 stride-2 deconvs (256, 128, 64; BN, ReLU) → 3×3 conv, tanh."""

    def __init__(self, z_dim: int = 128, bottom: int = 4, ch: int = 512) -> None:
        super().__init__()
        self.z_dim, self.bottom, self.ch = z_dim, bottom, ch
        self.fc = nn.Linear(z_dim, bottom * bottom * ch)
        self.bn0 = nn.BatchNorm2d(ch)
        layers: list[nn.Module] = []
        for c_in, c_out in ((ch, ch // 2), (ch // 2, ch // 4), (ch // 4, ch // 8)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch // 8, 3, 3, 1, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = torch.relu(self.bn0(self.fc(z).view(-1, self.ch, self.bottom, self.bottom)))
        return torch.tanh(self.out(self.deconvs(h)))


class CNNCritic(nn.Module):
    """Seven convs (3×3 s1 / 4×4 s2 alternating, 64→512 channels, LeakyReLU 0.1) and a dense layer to 1.

    ``M = 32`` (input size), so the last map is 4×4×512 before the dense layer.
    """

    def __init__(self, size: int = 32, ch: int = 64) -> None:
        super().__init__()
        spec = [(3, ch, 3, 1), (ch, ch, 4, 2), (ch, 2 * ch, 3, 1), (2 * ch, 2 * ch, 4, 2)]
        spec += [(2 * ch, 4 * ch, 3, 1), (4 * ch, 4 * ch, 4, 2), (4 * ch, 8 * ch, 3, 1)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, 1) for i, o, k, s in spec)
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(8 * ch * (size // 8) ** 2, 1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = x
        for conv in self.convs:
            h = self.act(conv(h))
        return self.fc(h.flatten(1)).squeeze(1)
