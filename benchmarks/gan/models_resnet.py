"""CIFAR ResNet generator and critic: SNGAN's (Miyato et al. 2018, Table 4) and the BigGAN-style conditional one.

The same blocks serve both setups: ``num_classes=0`` gives SNGAN's unconditional ResNet (G 256 channels,
D 128); ``num_classes=10`` gives the BigGAN-style 32×32 model (class-conditional BatchNorm in G,
a projection critic ``D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩``, 256 channels in both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CondBatchNorm2d(nn.Module):
    """BatchNorm without affine, then per-class gain γ_y and bias β_y (plain affine BN when unconditional)."""

    def __init__(self, ch: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=num_classes == 0)
        self.num_classes = num_classes
        if num_classes:
            self.gain = nn.Embedding(num_classes, ch)
            self.bias = nn.Embedding(num_classes, ch)
            nn.init.normal_(self.gain.weight, 1.0, 0.02)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.bn(x)
        if not self.num_classes:
            return h
        assert y is not None, "conditional BatchNorm needs class labels y"
        return h * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    """BN-ReLU-up×2-conv3×3-BN-ReLU-conv3×3, plus an up×2-conv1×1 shortcut."""

    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = CondBatchNorm2d(c_in, num_classes), CondBatchNorm2d(c_out, num_classes)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = F.interpolate(torch.relu(self.bn1(x, y)), scale_factor=2.0)
        h = self.conv2(torch.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0))


class DBlock(nn.Module):
    """Pre-activation ReLU-conv3×3-ReLU-conv3×3 (-avgpool 2); 1×1 shortcut (-avgpool) when shape changes.

    ``first=True`` is SNGAN's "optimized" first block: no leading ReLU, shortcut avgpool then 1×1 conv.
    """

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (down or c_in != c_out) else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(torch.relu(self.conv1(x if self.first else torch.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class ResNetGenerator(nn.Module):
    """z → dense 4·4·ch → three GBlocks (4→8→16→32) → BN-ReLU-conv3×3 → tanh."""

    def __init__(self, z_dim: int = 128, ch: int = 256, num_classes: int = 0, init: str = "xavier") -> None:
        super().__init__()
        self.z_dim, self.ch, self.num_classes = z_dim, ch, num_classes
        self.fc = nn.Linear(z_dim, 4 * 4 * ch)
        self.blocks = nn.ModuleList(GBlock(ch, ch, num_classes) for _ in range(3))
        self.bn = nn.BatchNorm2d(ch)
        self.out = nn.Conv2d(ch, 3, 3, 1, 1)
        _init(self, init)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.fc(z).view(-1, self.ch, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(torch.relu(self.bn(h))))


class ResNetCritic(nn.Module):
    """Blocks 32→16→8 (down, down) then two blocks at 8×8, ReLU, global sum pooling φ(x), dense ψ → 1.

    With ``num_classes`` the projection term ``⟨embed(y), φ(x)⟩`` is added (Miyato & Koyama 2018).
    """

    def __init__(self, ch: int = 128, num_classes: int = 0, init: str = "xavier") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.blocks = nn.Sequential(
            DBlock(3, ch, down=True, first=True), DBlock(ch, ch, down=True),
            DBlock(ch, ch, down=False), DBlock(ch, ch, down=False),
        )  # fmt: skip
        self.fc = nn.Linear(ch, 1)
        self.embed = nn.Embedding(num_classes, ch) if num_classes else None
        _init(self, init)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        phi = torch.relu(self.blocks(x)).sum(dim=(2, 3))
        out = self.fc(phi).squeeze(1)
        if self.embed is not None:
            assert y is not None, "the projection critic needs class labels y"
            out = out + (self.embed(y) * phi).sum(1)
        return out


def _init(model: nn.Module, init: str) -> None:
    """``"xavier"``: SNGAN's (Xavier-uniform, gain √2 in residual branches, 1 elsewhere); ``"n02"``: N(0, 0.02)."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "n02":
                nn.init.normal_(m.weight, 0.0, 0.02)
            else:
                branch = name.endswith(("conv1", "conv2"))
                nn.init.xavier_uniform_(m.weight, math.sqrt(2.0) if branch else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding) and name.endswith("embed"):
            nn.init.xavier_uniform_(m.weight) if init == "xavier" else nn.init.normal_(m.weight, 0.0, 0.02)
