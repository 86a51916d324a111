"""The paper's critic architectures missing from mmagic, registered in MMEngine's root ``MODELS``.

- :class:`SNGANStandardCNNGenerator` / :class:`SNGANStandardCNNDiscriminator`: the "standard CNN" of
  Miyato et al. (2018, Table 3), used by the SAN paper's CIFAR-10 experiments. They follow the call
  conventions of mmagic's ``SNGANGenerator``/``ProjDiscriminator`` so mmagic's ``SNGAN`` model trains
  them (unconditional: ``num_classes=0``, ``label`` is accepted and ignored).
- :class:`SRCritic`: the paper's super-resolution critic, a plain feed-forward CNN with 10 convolutions
  (5 stages of a 3×3 stride-1 and a 4×4 stride-2 conv, BN, LeakyReLU) and 2 fully-connected layers.

All are plain ``nn.Conv2d``/``nn.Linear`` networks without spectral norm: ``SANHook`` normalizes them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from san_compat.sr_critic import paper_sr_critic_layers
from torch import Tensor, nn

__all__ = ["SNGANStandardCNNDiscriminator", "SNGANStandardCNNGenerator", "SRCritic"]


@MODELS.register_module()
class SNGANStandardCNNGenerator(BaseModule):
    """Standard-CNN generator: ``z ∈ R^noise_size`` -> dense -> ``M×M×8c`` -> 3 deconvs (×2 each) -> 3×3 conv, tanh.

    Args:
        output_scale: image side (32 for CIFAR-10); ``M = output_scale / 8``.
        noise_size: length of ``z`` (128).
        base_channels: ``c`` (64): the feature maps have ``8c, 4c, 2c, c`` channels.
        out_channels: image channels (3).
    """

    def __init__(
        self,
        output_scale: int = 32,
        noise_size: int = 128,
        base_channels: int = 64,
        out_channels: int = 3,
        num_classes: int = 0,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if output_scale % 8 or output_scale < 8:
            raise ValueError(f"SNGANStandardCNNGenerator: expected output_scale a multiple of 8, got {output_scale}")
        if num_classes:
            raise ValueError(f"SNGANStandardCNNGenerator is unconditional: expected num_classes=0, got {num_classes}")
        self.noise_size, self.num_classes, self.base_scale = noise_size, 0, output_scale // 8
        c = base_channels
        self.noise2feat = nn.Linear(noise_size, self.base_scale**2 * 8 * c)
        layers: list[nn.Module] = [nn.BatchNorm2d(8 * c), nn.ReLU()]
        for cin, cout in ((8 * c, 4 * c), (4 * c, 2 * c), (2 * c, c)):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]
        layers += [nn.Conv2d(c, out_channels, 3, 1, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*layers)

    def forward(
        self,
        noise: Union[Tensor, Callable, None],
        num_batches: int = 0,
        label: Any = None,
        return_noise: bool = False,
    ) -> Union[Tensor, dict]:
        """``noise``: a ``(n, noise_size)`` tensor, a sampler ``f(shape)``, or None (standard normal)."""
        if isinstance(noise, Tensor):
            if noise.ndim != 2 or noise.shape[1] != self.noise_size:
                raise ValueError(f"expected noise of shape (n, {self.noise_size}), got {tuple(noise.shape)}")
            z = noise
        elif callable(noise):
            z = noise((num_batches, self.noise_size))
        else:
            z = torch.randn(num_batches, self.noise_size)
        z = z.to(self.noise2feat.weight.device)
        x = self.noise2feat(z).view(z.shape[0], -1, self.base_scale, self.base_scale)
        img = self.blocks(x)
        return dict(fake_img=img, noise_batch=z, label=None) if return_noise else img


@MODELS.register_module()
class SNGANStandardCNNDiscriminator(BaseModule):
    """Standard-CNN critic: 7 convs (3×3 s1 / 4×4 s2, ``c, c, 2c, 2c, 4c, 4c, 8c``), LeakyReLU(0.1), dense -> 1.

    ``with_spectral_norm=True`` puts torch's spectral norm on every layer (the SN-GAN baseline).
    """

    def __init__(
        self,
        input_scale: int = 32,
        in_channels: int = 3,
        base_channels: int = 64,
        num_classes: int = 0,
        negative_slope: float = 0.1,
        with_spectral_norm: bool = False,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if input_scale % 8 or input_scale < 8:
            raise ValueError(f"SNGANStandardCNNDiscriminator: expected input_scale a multiple of 8, got {input_scale}")
        if num_classes:
            raise ValueError(
                f"SNGANStandardCNNDiscriminator is unconditional: expected num_classes=0, got {num_classes}"
            )
        self.num_classes, self.input_scale = 0, input_scale
        c = base_channels
        plan = [(in_channels, c, 3, 1), (c, c, 4, 2), (c, 2 * c, 3, 1), (2 * c, 2 * c, 4, 2)]
        plan += [(2 * c, 4 * c, 3, 1), (4 * c, 4 * c, 4, 2), (4 * c, 8 * c, 3, 1)]
        layers: list[nn.Module] = []
        for cin, cout, k, s in plan:
            layers += [nn.Conv2d(cin, cout, k, s, 1), nn.LeakyReLU(negative_slope)]
        self.convs = nn.Sequential(*layers)
        self.decision = nn.Linear((input_scale // 8) ** 2 * 8 * c, 1)
        if with_spectral_norm:
            for layer in [*self.convs, self.decision]:
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.utils.spectral_norm(layer)

    def forward(self, x: Tensor, label: Any = None) -> Tensor:
        return self.decision(self.convs(x).flatten(1))


@MODELS.register_module()
class SRCritic(BaseModule):
    """The paper's SR critic: 5 stages of (3×3 s1 conv, BN, LReLU, 4×4 s2 conv, BN, LReLU), then FC -> FC -> 1.

    Channels ``c·2^i`` capped at ``max_channels`` (64…512); only the first conv has a bias. The head
    sees a ``4×4`` map, so inputs are ``input_size = 4·2^num_stages`` (128): larger inputs are cropped
    to it (randomly in training, centred in eval), smaller ones rejected. The layers are
    :func:`san_compat.sr_critic.paper_sr_critic_layers` (shared with ``san_basicsr.SRCriticSAN``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        mid_channels: int = 64,
        max_channels: int = 512,
        num_stages: int = 5,
        negative_slope: float = 0.1,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_stages < 1:
            raise ValueError(f"SRCritic: expected num_stages >= 1, got {num_stages}")
        body = paper_sr_critic_layers(in_channels, mid_channels, max_channels, num_stages, negative_slope)
        self.input_size, self.features, self.classifier = body.input_size, body.features, body.classifier

    def forward(self, x: Tensor) -> Tensor:
        size = self.input_size
        h, w = x.shape[-2:]
        if h < size or w < size:
            raise ValueError(f"SRCritic: expected inputs of at least {size}×{size}, got {h}×{w}")
        if (h, w) != (size, size):
            top = int(torch.randint(h - size + 1, ())) if self.training else (h - size) // 2
            left = int(torch.randint(w - size + 1, ())) if self.training else (w - size) // 2
            x = x[..., top : top + size, left : left + size]
        return self.classifier(self.features(x).flatten(1))
