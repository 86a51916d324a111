"""SAN discriminators registered in BasicSR's ``ARCH_REGISTRY`` (importing this module registers them).

Each takes the upstream arch's arguments plus an optional ``san:`` block (:mod:`san_basicsr.options`),
has no spectral norm, switches the convs it normalizes to circular padding (Lemma 1 is exact there),
and owns a :class:`san_core.SAN` (``net.san``) that normalizes every selected layer before its first
forward; :func:`san_basicsr.patch.attach_to_model` then runs it after every real ``optimizer_d.step()``.

- ``UNetDiscriminatorSAN`` (Real-ESRGAN's ``UNetDiscriminatorSN`` without SN): by default SAN takes
  exactly the layers upstream puts under SN, ``conv1``–``conv8``: the three strided down-convs, the
  three up-convs ``conv4``–``conv6`` (each after a ×2 bilinear upsampling) and ``conv7``/``conv8``;
  ``conv0`` (sees the image) and ``conv9`` (the per-pixel output) stay plain, with zero padding, as
  upstream leaves them. What the 1-sparse bound means here: ‖W‖₀,∞ is each conv's gain on inputs with
  one non-zero channel, on that conv's own input grid (the upsampled one for ``conv4``–``conv6``).
  Bilinear upsampling acts channel by channel, so it keeps a 1-sparse input 1-sparse; the skip sums
  (``x4 + x2``, ``x5 + x1``, ``x6 + x0``) feed ``conv5``–``conv7`` the union of two activations'
  supports, so their inputs are denser and SAN's bound is looser there (the paper's limitation for
  residual sums; ``san-inspect`` measures the density). Upsampling and sums are fixed operators
  outside any weight, exactly as under SN.
- ``VGGStyleDiscriminatorSAN`` (BasicSR's ``VGGStyleDiscriminator``, ESRGAN's critic): every conv
  (circular padding) and both linear layers (σ₁); BatchNorm kept as upstream.
- ``SRCriticSAN``: the paper's SR critic (5 stages of 3×3 s1 + 4×4 s2 conv, BN, LeakyReLU(0.1); FC
  → FC → 1), every conv and linear layer; input ``4·2^num_stages`` pixels square (128 by default).
"""

from __future__ import annotations

from typing import Any, Optional, Union

from basicsr.archs.discriminator_arch import UNetDiscriminatorSN, VGGStyleDiscriminator
from basicsr.utils.registry import ARCH_REGISTRY
from san_compat.sr_critic import paper_sr_critic_layers
from torch import Tensor, nn

from san_core import SAN, apply_san, strip_spectral_norm_

from .checkpoint import convert_spectral_norm_on_load
from .options import SANOptions, parse_san_block

__all__ = ["SAN_ARCHS", "SRCriticSAN", "UNetDiscriminatorSAN", "VGGStyleDiscriminatorSAN"]


def _apply(net: _SANArch, san: Any, default_targets: Optional[tuple[str, ...]]) -> SAN:
    options: SANOptions = parse_san_block(san, f"{type(net).__name__}.san")
    strip_spectral_norm_(net)  # a SAN arch has no spectral norm anywhere (same Parameters, weight_orig -> weight)
    net.san_options = options
    normalizer = apply_san(
        net,
        list(options.targets or default_targets or ()) or None,
        exclude=list(options.exclude) if options.exclude else None,
        circular_padding=options.circular_padding,
        strip_spectral_norm=False,
        normalize_at_first_forward=True,
        **options.san_kwargs,
    )
    net.register_load_state_dict_pre_hook(convert_spectral_norm_on_load)
    return normalizer


class UNetDiscriminatorSAN(UNetDiscriminatorSN):
    """Real-ESRGAN's U-Net discriminator with SAN instead of spectral norm (see the module docstring).

    Args: ``num_in_ch``, ``num_feat`` (64), ``skip_connection`` (True) as upstream; ``san``: the SAN options.
    """

    DEFAULT_TARGETS = ("conv[1-8]",)
    san_options: SANOptions

    def __init__(self, num_in_ch: int, num_feat: int = 64, skip_connection: bool = True, san: Any = None) -> None:
        super().__init__(num_in_ch, num_feat=num_feat, skip_connection=skip_connection)
        self.san = _apply(self, san, self.DEFAULT_TARGETS)


class VGGStyleDiscriminatorSAN(VGGStyleDiscriminator):
    """ESRGAN's VGG-style discriminator (BasicSR), every conv and linear layer under SAN.

    Args: ``num_in_ch``, ``num_feat``, ``input_size`` (128 or 256) as upstream; ``san``: the SAN options.
    """

    san_options: SANOptions

    def __init__(self, num_in_ch: int, num_feat: int, input_size: int = 128, san: Any = None) -> None:
        super().__init__(num_in_ch, num_feat, input_size=input_size)
        self.san = _apply(self, san, None)


class SRCriticSAN(nn.Module):
    """The SAN paper's SR critic: ``num_stages`` × (3×3 s1 conv, BN, LReLU, 4×4 s2 conv, BN, LReLU), FC, LReLU, FC.

    Channels ``num_feat·2^i`` capped at ``max_feat``; only the first conv has a bias; the head sees a
    4×4 map, so inputs are ``4·2^num_stages`` pixels square (128 for 5 stages). The layers are
    :func:`san_compat.sr_critic.paper_sr_critic_layers` (shared with ``san_mmagic.SRCritic``).
    """

    san_options: SANOptions

    def __init__(
        self,
        num_in_ch: int = 3,
        num_feat: int = 64,
        max_feat: int = 512,
        num_stages: int = 5,
        negative_slope: float = 0.1,
        san: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
            raise ValueError(f"SRCriticSAN: expected num_stages an int >= 1, got {num_stages!r}")
        body = paper_sr_critic_layers(num_in_ch, num_feat, max_feat, num_stages, negative_slope)
        self.input_size, self.features, self.classifier = body.input_size, body.features, body.classifier
        self.san = _apply(self, san, None)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"SRCriticSAN: expected {self.input_size}×{self.input_size} inputs (gt_size), got "
                f"{x.shape[-2]}×{x.shape[-1]}"
            )
        return self.classifier(self.features(x).flatten(1))


#: A SAN arch (each holds its parsed ``san:`` block as ``san_options``).
_SANArch = Union[UNetDiscriminatorSAN, VGGStyleDiscriminatorSAN, SRCriticSAN]

#: The registered names.
SAN_ARCHS: dict[str, type] = {
    "UNetDiscriminatorSAN": UNetDiscriminatorSAN,
    "VGGStyleDiscriminatorSAN": VGGStyleDiscriminatorSAN,
    "SRCriticSAN": SRCriticSAN,
}
for _name, _cls in SAN_ARCHS.items():
    if _name not in ARCH_REGISTRY:
        ARCH_REGISTRY.register(_cls)
