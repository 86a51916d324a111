"""The larger critics of the speed table, written from their papers' descriptions.

- :class:`VGGCritic`: ESRGAN's VGG-style critic for 128×128 crops (Wang et al. 2018; mmagic's
  ``ModifiedVGG``): five stages of (3×3 s1 conv, 4×4 s2 conv), BN after every conv but the first,
  LeakyReLU 0.2, then dense 512·4·4 → 100 → 1.
- :class:`PatchCritic`: SPADE's PatchGAN critic (Park et al. 2019, ``NLayerDiscriminator``) with
  ``n_layers_D=4``, ``ndf=64``: 4×4 convs with padding 2, strides 2, 2, 2, 1, 1, instance norm after
  the inner convs, LeakyReLU 0.2; input = label map one-hot + image (39 channels for 35 labels + RGB
  + the instance edge map), one scale of the multi-scale critic.
- :class:`UNetCritic`: Real-ESRGAN's U-Net discriminator (Wang et al. 2021, ``UNetDiscriminatorSN``
  without its spectral norm): a 3×3 conv to ``F`` channels, three 4×4 stride-2 convs to ``2F, 4F, 8F``,
  then three (×2 bilinear upsampling, 3×3 conv) stages back to ``4F, 2F, F`` with the encoder's maps added
  (skip connections), two 3×3 convs and a 3×3 conv to one logit per pixel; LeakyReLU 0.2, no biases but in
  the first and last conv. Upstream puts SN on ``conv1``–``conv8`` (:data:`UNET_NORMALIZED`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

#: The U-Net critic's layers under spectral norm in Real-ESRGAN (and under SAN in ``san_basicsr``).
UNET_NORMALIZED = ("conv[1-8]",)


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


class UNetCritic(nn.Module):
    """Returns the per-pixel logit map ``(B, 1, H, W)``; ``H`` and ``W`` divisible by 8."""

    def __init__(self, in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        f = num_feat
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(in_ch, f, 3, 1, 1)
        self.conv1 = nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False)
        self.conv3 = nn.Conv2d(4 * f, 8 * f, 4, 2, 1, bias=False)
        self.conv4 = nn.Conv2d(8 * f, 4 * f, 3, 1, 1, bias=False)
        self.conv5 = nn.Conv2d(4 * f, 2 * f, 3, 1, 1, bias=False)
        self.conv6 = nn.Conv2d(2 * f, f, 3, 1, 1, bias=False)
        self.conv7 = nn.Conv2d(f, f, 3, 1, 1, bias=False)
        self.conv8 = nn.Conv2d(f, f, 3, 1, 1, bias=False)
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        h = act(self.conv4(up(x3)))
        h = h + x2 if self.skip_connection else h
        h = act(self.conv5(up(h)))
        h = h + x1 if self.skip_connection else h
        h = act(self.conv6(up(h)))
        h = h + x0 if self.skip_connection else h
        return self.conv9(act(self.conv8(act(self.conv7(h)))))


class _NoLabel(nn.Module):
    """An upstream critic whose ``forward`` takes the image only, called as ``critic(x, y)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(x)


def upstream_unet() -> nn.Module | None:
    """Real-ESRGAN's own ``UNetDiscriminatorSN(3, 64)`` from the installed BasicSR with its spectral norm stripped
    (same Parameters, ``weight_orig`` → ``weight``; layers under ``net.``), or ``None`` where BasicSR is not
    importable (then use :class:`UNetCritic`). Imported lazily, after ``san_basicsr``'s compat step."""
    try:
        import san_basicsr  # noqa: F401  (compat fixes before basicsr imports torchvision)
        from basicsr.archs.discriminator_arch import UNetDiscriminatorSN
    except ImportError:
        return None
    import san_core

    net = UNetDiscriminatorSN(3, num_feat=64, skip_connection=True)
    san_core.strip_spectral_norm_(net)
    return _NoLabel(net)


def unet_critic() -> nn.Module:
    """:func:`upstream_unet` where BasicSR is importable, else :class:`UNetCritic` (same layers and forward)."""
    return upstream_unet() or UNetCritic()
