"""Input checks of :class:`~san_core.SAN`: each raises one ``ValueError`` naming what was expected and what was got."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._reparam import FORMS, InverseScale, raw_weight
from .spectral_norm import spectral_norm_style
from .spectrum import METHODS, STRIDE_MODES


def check_config(
    interval: int,
    filter_ratio: float,
    gain: Optional[float],
    stride_mode: str,
    eps: float,
    linear_method: str,
    n_power_iter: int,
    method: str,
    max_memory: int,
    seed: int,
) -> None:
    def bad(key: str, expected: str, got: Any) -> ValueError:
        return ValueError(f"SAN: expected {key} {expected}, got {got!r}")

    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise bad("interval", "to be an int >= 1", interval)
    if isinstance(filter_ratio, bool) or not isinstance(filter_ratio, (int, float)) or not 0 < filter_ratio <= 1:
        raise bad("filter_ratio", "in (0, 1]", filter_ratio)
    if gain is not None and (not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0):
        raise bad("gain", "to be None or a finite number > 0", gain)
    if stride_mode not in STRIDE_MODES:
        raise bad("stride_mode", f"in {STRIDE_MODES}", stride_mode)
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise bad("eps", "> 0", eps)
    if linear_method not in ("svd", "power"):
        raise bad("linear_method", "'svd' or 'power'", linear_method)
    if not isinstance(n_power_iter, int) or n_power_iter < 1:
        raise bad("n_power_iter", "to be an int >= 1", n_power_iter)
    if method not in METHODS:
        raise bad("method", f"in {METHODS}", method)
    if not isinstance(max_memory, int) or max_memory < 1024:
        raise bad("max_memory", "to be an int number of bytes >= 1024", max_memory)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise bad("seed", "to be an int", seed)


def check_sync_options(sync_free: Optional[bool], compile_step: bool, cuda_graph: bool) -> None:
    for key, value in (("sync_free", sync_free), ("compile_step", compile_step), ("cuda_graph", cuda_graph)):
        if not isinstance(value, bool) and not (key == "sync_free" and value is None):
            expected = "None or a bool" if key == "sync_free" else "a bool"
            raise ValueError(f"SAN: expected {key} to be {expected}, got {value!r}")
    if (compile_step or cuda_graph) and sync_free is False:
        raise ValueError("SAN: compile_step/cuda_graph compile the sync-free step; they need sync_free=None or True")
    if cuda_graph and not torch.cuda.is_available():
        raise ValueError("SAN: cuda_graph=True needs CUDA, but torch.cuda.is_available() is False")


def check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"SAN: expected form in {FORMS}, got {form!r}")


def check_layer(name: str, layer: nn.Module) -> None:
    style = spectral_norm_style(layer)
    if style is not None:
        raise ValueError(
            f"SAN: layer {name!r} has {style}-style spectral norm; remove it first with "
            "strip_spectral_norm_() or use apply_san(..., strip_spectral_norm=True)"
        )
    if parametrize.is_parametrized(layer, "weight"):
        if any(isinstance(p, InverseScale) for p in layer.parametrizations["weight"]):  # type: ignore[index]
            raise ValueError(
                f"SAN: layer {name!r} carries the W / s of SAN's form='reparametrize' (a copy of a critic with SAN "
                "applied?); remove it first: torch.nn.utils.parametrize.remove_parametrizations(layer, 'weight', "
                "leave_parametrized=False)"
            )
        raise ValueError(f"SAN: layer {name!r} has a parametrized weight; SAN rescales a plain Parameter")
    weight = layer._parameters.get("weight")
    if not isinstance(weight, nn.Parameter):
        raise ValueError(f"SAN: layer {name!r} has no 'weight' Parameter (got {type(weight).__name__})")
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise ValueError(f"SAN: layer {name!r} is lazy and not initialized; run one forward pass first")
    if weight.device.type == "meta":
        raise ValueError(f"SAN: layer {name!r} has a meta weight (no values); materialize the model first")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError(f"SAN: layer {name!r} has NaN/Inf weights")


def check_size(
    name: str, conv: nn.modules.conv._ConvNd, size: Sequence[int], stride_mode: str = "paper"
) -> tuple[int, ...]:
    """``size`` as a tuple of ints, checked against the conv (and, for ``stride_mode="exact"``, its stride)."""
    ndim = raw_weight(conv).dim() - 2
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or isinstance(size, bool):
        raise ValueError(f"SAN: layer {name!r} expects an input size of {ndim} positive ints, got {size!r}")
    try:
        size = tuple(operator.index(s) for s in size if not isinstance(s, bool) or 1 / 0)
    except (TypeError, ZeroDivisionError):
        raise ValueError(f"SAN: layer {name!r} expects an input size of {ndim} positive ints, got {size!r}") from None
    if len(size) != ndim or any(s < 1 for s in size):
        raise ValueError(f"SAN: layer {name!r} expects an input size of {ndim} positive ints, got {size}")
    transposed = isinstance(conv, nn.modules.conv._ConvTransposeNd)
    if stride_mode == "exact" and not transposed and any(n % s for n, s in zip(size, conv.stride)):
        raise ValueError(
            f"SAN: layer {name!r} sees a {size} input, not divisible by its stride {tuple(conv.stride)}, which "
            "stride_mode='exact' needs; use stride_mode='paper' (an upper bound) or inputs divisible by the stride"
        )
    if isinstance(conv.padding, str) or transposed:
        return size
    for n, k, d, p in zip(size, conv.kernel_size, conv.dilation, conv.padding):
        if d * (k - 1) + 1 > n + 2 * p or (conv.padding_mode == "circular" and p > n):
            raise ValueError(
                f"SAN: layer {name!r} cannot run on a {size} map: kernel {tuple(conv.kernel_size)} dilation "
                f"{tuple(conv.dilation)} padding {tuple(conv.padding)} ({conv.padding_mode}) needs a larger map"
            )
    return size


def check_layer_gains(gains: Optional[Mapping[str, float]], layers: Mapping[str, nn.Module]) -> dict[str, float]:
    """``{layer: g_l}`` with every name a selected layer and every ``g_l`` a finite number > 0 (a plain copy)."""
    if gains is None:
        return {}
    if not isinstance(gains, Mapping):
        raise ValueError(f"SAN: expected layer_gains to be a mapping {{layer name: gain}}, got {type(gains).__name__}")
    unknown = sorted(str(n) for n in gains if n not in layers)
    if unknown:
        raise ValueError(f"SAN: layer_gains names layers that are not selected: {unknown}; selected: {list(layers)}")
    bad = {n: g for n, g in gains.items() if isinstance(g, bool) or not isinstance(g, (int, float)) or not g > 0}
    bad.update({n: g for n, g in gains.items() if n not in bad and not math.isfinite(g)})
    if bad:
        raise ValueError(f"SAN: expected every layer gain to be a finite number > 0, got {bad}")
    return {n: float(g) for n, g in gains.items()}


def check_optimizer(optimizer: Any, module: nn.Module) -> None:
    """``optimizer`` must be an optimizer holding at least one Parameter of ``module``."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(optimizer, torch.optim.Optimizer) or not isinstance(groups, list):
        raise TypeError(f"SAN.attach: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    held = [p for g in groups for p in g.get("params", ())]
    ours = {id(p) for p in module.parameters()}
    if not any(id(p) in ours for p in held):
        raise ValueError(
            f"SAN.attach: the optimizer holds {len(held)} parameters, none of them the critic's "
            f"({type(module).__name__}, {len(ours)} parameters); attach the critic's optimizer"
        )
