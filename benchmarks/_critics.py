"""Layer shapes of the four benchmarked critics (input map sizes propagated with torch on ``meta``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Layer:
    """A conv (``size`` = its input map ``(H, W)``) or a Linear layer (``k``, ``stride``, ``size`` unused)."""

    kind: str
    out_ch: int
    in_ch: int
    k: int = 1
    stride: int = 1
    padding: int = 0
    size: tuple[int, int] = (1, 1)

    @property
    def label(self) -> str:
        if self.kind == "linear":
            return f"Linear {self.in_ch}→{self.out_ch}"
        return f"{self.in_ch}→{self.out_ch} k{self.k} s{self.stride} p{self.padding} @{self.size[0]}×{self.size[1]}"

    def module(self, device: torch.device | str = "cpu") -> nn.Module:
        if self.kind == "linear":
            return nn.Linear(self.in_ch, self.out_ch, device=device)
        return nn.Conv2d(
            self.in_ch, self.out_ch, self.k, self.stride, self.padding, padding_mode="circular", device=device
        )

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.in_ch) if self.kind == "linear" else (batch, self.in_ch, *self.size)


def _chain(size: tuple[int, int], convs: list[tuple[int, int, int, int, int]]) -> tuple[list[Layer], tuple]:
    """Sequential convs ``(out, in, k, stride, padding)``; returns the layers and the final map size."""
    layers = []
    for out_ch, in_ch, k, stride, padding in convs:
        layer = Layer("conv", out_ch, in_ch, k, stride, padding, size)
        layers.append(layer)
        out = layer.module("meta")(torch.empty(layer.input_shape(1), device="meta"))
        size = tuple(out.shape[-2:])
    return layers, size


def sngan_cnn() -> list[Layer]:
    """Miyato et al. 2018, Table 3 (CIFAR-10 standard CNN critic), M = 32."""
    convs = [(64, 3, 3, 1, 1), (64, 64, 4, 2, 1), (128, 64, 3, 1, 1), (128, 128, 4, 2, 1)]
    convs += [(256, 128, 3, 1, 1), (256, 256, 4, 2, 1), (512, 256, 3, 1, 1)]
    layers, size = _chain((32, 32), convs)
    assert size == (4, 4), size
    return [*layers, Layer("linear", 1, 512 * 4 * 4)]


def resnet() -> list[Layer]:
    """SNGAN / WGAN-GP CIFAR ResNet critic, 128 channels.

    OptimizedBlock(3→128) at 32 (conv, conv, pool; shortcut pool → 1×1 at 16), a downsampling
    block at 16 (two 3×3 + a learned 1×1 shortcut), two plain blocks at 8, then Linear 128→1.
    """
    conv3 = [Layer("conv", 128, 3, 3, 1, 1, (32, 32)), Layer("conv", 128, 128, 3, 1, 1, (32, 32))]
    conv3 += [Layer("conv", 128, 128, 3, 1, 1, (16, 16))] * 2 + [Layer("conv", 128, 128, 3, 1, 1, (8, 8))] * 4
    shortcuts = [Layer("conv", 128, 3, 1, 1, 0, (16, 16)), Layer("conv", 128, 128, 1, 1, 0, (16, 16))]
    return [*conv3, *shortcuts, Layer("linear", 1, 128)]


def spade() -> list[Layer]:
    """SPADE NLayerDiscriminator (one scale of the multiscale D), n_layers_D=4, ndf=64, padw=2, 256×512."""
    convs = [(64, 39, 4, 2, 2), (128, 64, 4, 2, 2), (256, 128, 4, 2, 2), (512, 256, 4, 1, 2), (1, 512, 4, 1, 2)]
    return _chain((256, 512), convs)[0]


def esrgan() -> list[Layer]:
    """ESRGAN VGG-128 critic (mmagic ModifiedVGG, mid_channels=64) on 128×128."""
    convs, ch_in = [], 3
    for ch in (64, 128, 256, 512, 512):
        convs += [(ch, ch_in, 3, 1, 1), (ch, ch, 4, 2, 1)]
        ch_in = ch
    layers, size = _chain((128, 128), convs)
    assert size == (4, 4), size
    return [*layers, Layer("linear", 100, 512 * 4 * 4), Layer("linear", 1, 100)]


CRITICS = {"sngan_cnn": sngan_cnn, "resnet": resnet, "spade": spade, "esrgan": esrgan}


def unique_layers(layers: list[Layer]) -> list[tuple[Layer, int]]:
    """Distinct layer shapes in order of first appearance, with their multiplicity."""
    return list(Counter(layers).items())
