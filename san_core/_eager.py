"""The eager (host-syncing, exact) constants of the layers of a :class:`SAN` (conv_constant, linear_constant)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from ._reparam import raw_weight as _weight
from .spectrum import conv_constant, linear_constant


def constant_of(san: Any, name: str) -> Tensor:
    """The eager constant of one layer: ``g_l`` × (``‖W‖₀,∞`` of a conv, max over its recorded input sizes, or
    ``σ₁``), with the SAN's configuration. A constant that overflows float32 (weights ~1e20) is recomputed in
    float64 from the same subsets and power vector (and returned in float32: the constant itself fits)."""
    g_l = san.config["layer_gains"].get(name)
    weight = _weight(san.layers[name])
    rng_state = san.generator.get_state()
    u = san.power_vectors.get(name)
    u_before = None if u is None else u.clone()
    constant = _base_constant(san, name, weight)
    if weight.dtype != torch.float64 and not bool(torch.isfinite(constant)) and bool(torch.isfinite(weight).all()):
        san.generator.set_state(rng_state)
        if u is not None and u_before is not None:
            u.copy_(u_before)
        else:
            san.power_vectors.pop(name, None)
        constant = _base_constant(san, name, weight.detach().to(torch.float64)).to(constant.dtype)
        if u is None and name in san.power_vectors:  # created by the float64 retry: keep the weight's precision
            san.power_vectors[name] = san.power_vectors[name].to(torch.float32)
    return constant if g_l is None else constant * g_l


def _base_constant(san: Any, name: str, weight: Tensor) -> Tensor:
    layer = san.layers[name]
    cfg = san.config
    if isinstance(layer, nn.modules.conv._ConvNd):
        # every recorded size, the same kernel subset for all of them (the generator advances once)
        rng_state = san.generator.get_state()
        out: Optional[Tensor] = None
        for i, size in enumerate(san.sizes_of(name)):
            if i:
                san.generator.set_state(rng_state)
            constant = conv_constant(
                weight,
                size,
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
            out = constant if out is None else torch.maximum(out, constant)
        assert out is not None
        return out
    if cfg["linear_method"] == "power":
        u = san.power_vectors.get(name)
        if u is None:
            dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
            u = san.power_vectors[name] = torch.ones(weight.shape[0], dtype=dtype, device=weight.device)
        return linear_constant(weight, method="power", u=u, n_iter=cfg["n_power_iter"])
    return linear_constant(weight)
