"""The two larger critics of the speed table, written from their papers' descriptions.

- :class:`VGGCritic`: ESRGAN's VGG-style critic for 128×128 crops (Wang et al. 2018; mmagic's
  ``ModifiedVGG``): five stages of (3×3 s1 conv, 4×4 s2 conv), BN after every conv but the first,
  LeakyReLU 0.2, then dense 512·4·4 → 100 → 1.
- :class:`PatchCritic`: SPADE's PatchGAN critic (Park et al. 2019, ``NLayerDiscriminator``) with
  ``n_layers_D=4``, ``ndf=64``: 4×4 convs with padding 2, strides 2, 2, 2, 1, 1, instance norm after
  the inner convs, LeakyReLU 0.2; input = label map one-hot + image (39 channels for 35 labels + RGB
  + the instance edge map), one scale of the multi-scale critic.
"""

from __future__ import annotations

from torch import Tensor, nn


class VGGCritic(nn.Module):
    def __init__(self, in_ch: int = 3, ch: int = 64, size: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_ch
        for i, c in enumerate((ch, 2 * ch, 4 * ch, 8 * ch, 8 * ch)):
            layers += [nn.Conv2d(c_in, c, 3, 1, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(c)] if i else []
            layers += [nn.LeakyReLU(0.2), nn.Conv2d(c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(8 * ch * (size // 32) ** 2, 100)
        self.fc2 = nn.Linear(100, 1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.fc2(self.act(self.fc1(self.features(x).flatten(1)))).squeeze(1)


class PatchCritic(nn.Module):
    def __init__(self, in_ch: int = 39, ndf: int = 64, n_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 2), nn.LeakyReLU(0.2)]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            layers += [nn.Conv2d(nf_prev, nf, 4, stride, 2, bias=False), nn.InstanceNorm2d(nf), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(nf, 1, 4, 1, 2)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Returns the patch map's mean per image (the hinge loss averages over patches)."""
        return self.model(x).mean(dim=(1, 2, 3))
