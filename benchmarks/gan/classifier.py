"""The CIFAR-10 ResNet of He et al. 2016 (§4.2; option A shortcuts, 16/32/64 channels, 6n+2 layers).

Written from the paper to load the trained checkpoints in ``shared/data/cifar10_classifiers/``
(``torch.save`` dicts ``{'state_dict', 'best_prec1'}``, keys prefixed ``module.``) strictly. Inputs are
RGB in [0, 1] normalized with the ImageNet mean/std the checkpoints were trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus shortcut, ReLU. Option A: strided identity, zero-padded channels."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad = (c_out - c_in) // 2 if (stride != 1 or c_in != c_out) else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.pad is None:
            return torch.relu(out + x)
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return torch.relu(out + shortcut)


class CifarResNet(nn.Module):
    """conv3×3(16) → 3 stages of n blocks (16, 32, 64 channels; stride 1, 2, 2) → global avg pool (64-d) → 10."""

    def __init__(self, n: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, c_in = [], 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled 64-d features and the 10 logits of images in [0, 1]."""
        h = torch.relu(self.bn1(self.conv1((x01 - self.mean) / self.std)))
        h = self.layer3(self.layer2(self.layer1(h)))
        pooled = h.mean(dim=(2, 3))
        return pooled, self.linear(pooled)

    def forward(self, x01: Tensor) -> Tensor:
        return self.features(x01)[1]


def load_classifier(path: Path, arch: str | None = None) -> CifarResNet:
    """Build the ResNet named by ``arch`` (default: the file name's prefix, e.g. ``resnet20``), load strictly."""
    path = Path(path)
    arch = arch or path.name.split("-")[0]
    if arch not in DEPTHS:
        raise ValueError(f"classifier: expected arch in {sorted(DEPTHS)}, got {arch!r} (from {path.name})")
    if not path.is_file():
        raise FileNotFoundError(f"classifier weights not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = CifarResNet(DEPTHS[arch])
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(model: CifarResNet, x_uint8_nhwc: Tensor, y: Tensor, batch: int = 500) -> float:
    """Top-1 accuracy on uint8 (N, H, W, 3) images."""
    correct = 0
    for i in range(0, len(y), batch):
        x = x_uint8_nhwc[i : i + batch].permute(0, 3, 1, 2).float() / 255
        correct += int((model(x).argmax(1) == y[i : i + batch]).sum())
    return correct / len(y)
