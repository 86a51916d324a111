"""Module builders for StudioGAN's ``MODULES.d_*`` slots: plain layers for SAN (no spectral norm).

StudioGAN's model files build every discriminator layer through ``MODULES.d_conv2d``,
``MODULES.d_deconv2d``, ``MODULES.d_linear`` and ``MODULES.d_embedding`` with the keyword
signatures of ``utils/ops.py``. With ``MODEL.apply_d_sn: True`` those are the ``sn*`` builders
(``torch.nn.utils.spectral_norm`` wrappers); with ``MODEL.apply_d_san: True`` they are these:

==================  ===========================  =============================================
slot                SN builder (StudioGAN)       SAN builder (here)
==================  ===========================  =============================================
``d_conv2d``        ``ops.snconv2d``             :func:`san_conv2d`: ``nn.Conv2d``, circular padding
``d_deconv2d``      ``ops.sndeconv2d``           :func:`san_deconv2d`: ``nn.ConvTranspose2d`` (zero padding)
``d_linear``        ``ops.snlinear``             :func:`san_linear`: ``nn.Linear``
``d_embedding``     ``ops.sn_embedding``         :func:`san_embedding`: ``nn.Embedding``
==================  ===========================  =============================================

The SAN constants (``‖W‖₀,∞`` for convs, ``σ₁`` for Linear/Embedding) are then applied by
:class:`san_core.SAN` after every discriminator optimizer step. Lemma 1 is exact under circular
padding, hence ``padding_mode="circular"``; PyTorch's transposed convs support only zero padding.

The builders are module-level functions so that pickling ``cfgs.MODULES`` (StudioGAN's DDP
spawns workers and sends them the configuration) stores them by reference.
"""

from __future__ import annotations

from typing import Callable, Union

from torch import nn

Size = Union[int, tuple[int, int]]


def san_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: Size,
    stride: Size = 1,
    padding: Size = 0,
    dilation: Size = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """``nn.Conv2d`` with ``padding_mode="circular"`` (same padding amount as requested)."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
        padding_mode="circular",
    )


def san_conv2d_zero_padding(
    in_channels: int,
    out_channels: int,
    kernel_size: Size,
    stride: Size = 1,
    padding: Size = 0,
    dilation: Size = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """``nn.Conv2d`` with zero padding (``MODEL.d_san_circular_padding: False``; Lemma 1 is then a bound)."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def san_deconv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: Size,
    stride: Size = 2,
    padding: Size = 0,
    dilation: Size = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.ConvTranspose2d:
    """``nn.ConvTranspose2d`` (StudioGAN's default stride 2); zero padding, the only mode PyTorch has."""
    return nn.ConvTranspose2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def san_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear``; SAN divides its weight by ``σ₁``."""
    return nn.Linear(in_features, out_features, bias=bias)


def san_embedding(num_embeddings: int, embedding_dim: int) -> nn.Embedding:
    """``nn.Embedding``; SAN divides its weight by ``σ₁``."""
    return nn.Embedding(num_embeddings, embedding_dim)


def d_builders(circular_padding: bool = True) -> dict[str, Callable[..., nn.Module]]:
    """``{MODULES slot: builder}`` for the four discriminator slots SAN replaces."""
    return {
        "d_conv2d": san_conv2d if circular_padding else san_conv2d_zero_padding,
        "d_deconv2d": san_deconv2d,
        "d_linear": san_linear,
        "d_embedding": san_embedding,
    }
