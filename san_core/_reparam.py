"""The two forms of SAN: in-place ``"rescale"`` (``W ← W / c``) and the authors' ``"reparametrize"``.

``form="reparametrize"`` is what kligvasser/SANGAN's ``sparse.py`` does: the layer's forward uses
``W / s`` where ``W`` stays the raw trained Parameter and ``s`` is a buffer, recomputed from the raw
``W`` (``s = g_l · ‖W‖₀,∞``, or ``σ₁`` for Linear/Embedding) after each counted optimizer step and
every ``interval``; no gradient flows through ``s`` (like ``torch.nn.utils.spectral_norm``, which
also computes its ``σ`` under ``no_grad``). It is installed with
:func:`torch.nn.utils.parametrize.register_parametrization`, so the raw weight keeps its Parameter
object (``layer.parametrizations.weight.original``: optimizers need no change) and the model's
state dict holds ``…parametrizations.weight.original`` and ``…parametrizations.weight.0.s``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

FORMS = ("rescale", "reparametrize")


class InverseScale(nn.Module):
    """The parametrization ``W ↦ W / s`` with ``s`` a 0-d buffer of the weight's dtype (1 until SAN sets it)."""

    s: Tensor

    def __init__(self, weight: Tensor, parameter_order: list[str]) -> None:
        super().__init__()
        self.register_buffer("s", torch.ones((), dtype=weight.dtype, device=weight.device))
        self.parameter_order = parameter_order  # the layer's own, restored on removal (state-dict key order)

    def forward(self, weight: Tensor) -> Tensor:
        return weight / self.s


def raw_weight(layer: nn.Module) -> Tensor:
    """The trained Parameter: ``weight`` itself, or ``parametrizations.weight.original`` in the reparametrized form."""
    if parametrize.is_parametrized(layer, "weight"):
        weight = layer.parametrizations["weight"].original  # type: ignore[union-attr,index]
    else:
        weight = layer._parameters["weight"]
    assert isinstance(weight, Tensor)
    return weight


def install(layer: nn.Module) -> InverseScale:
    """Register ``W / s`` on ``layer.weight`` (same Parameter object as ``original``); returns the ``s`` holder."""
    scale = InverseScale(raw_weight(layer), list(layer._parameters))
    parametrize.register_parametrization(layer, "weight", scale)
    return scale


def uninstall(layer: nn.Module, scale: InverseScale, *, fold_scale: bool) -> None:
    """Remove the parametrization: the layer gets back its class and its ``weight`` Parameter object, holding the raw
    weight (``fold_scale=False``) or ``W / s`` written into it (``fold_scale=True``)."""
    if not parametrize.is_parametrized(layer, "weight"):
        return
    original = raw_weight(layer)
    if fold_scale:
        with torch.no_grad():
            original.div_(scale.s)
    parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    params = dict(layer._parameters)
    layer._parameters.clear()
    for key in [
        *(k for k in scale.parameter_order if k in params),
        *(k for k in params if k not in scale.parameter_order),
    ]:
        layer._parameters[key] = params[key]
