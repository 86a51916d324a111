"""The eager (host-syncing, exact) constants of the layers of a :class:`SAN` (conv_constant, linear_constant)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._reparam import raw_weight as _weight
from .spectrum import conv_constant, linear_constant


def constant_of(san: Any, name: str) -> Tensor:
    """The eager constant of one layer: ``g_l`` × (``‖W‖₀,∞`` of a conv or ``σ₁``), with the SAN's configuration."""
    g_l = san.config["layer_gains"].get(name)
    constant = _base_constant(san, name)
    return constant if g_l is None else constant * g_l


def _base_constant(san: Any, name: str) -> Tensor:
    layer = san.layers[name]
    weight = _weight(layer)
    cfg = san.config
    if isinstance(layer, nn.modules.conv._ConvNd):
        return conv_constant(
            weight,
            san.input_sizes[name],
            stride=layer.stride,
            dilation=layer.dilation,
            groups=layer.groups,
            transposed=isinstance(layer, nn.modules.conv._ConvTransposeNd),
            stride_mode=cfg["stride_mode"],
            filter_ratio=cfg["filter_ratio"],
            gain=cfg["gain"],
            generator=san.generator,
            method=cfg["method"],
            max_memory=cfg["max_memory"],
        )
    if cfg["linear_method"] == "power":
        u = san.power_vectors.get(name)
        if u is None:
            dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
            u = san.power_vectors[name] = torch.ones(weight.shape[0], dtype=dtype, device=weight.device)
        return linear_constant(weight, method="power", u=u, n_iter=cfg["n_power_iter"])
    return linear_constant(weight)
