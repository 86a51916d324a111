"""Tied weights: one Parameter used by several selected layers is normalized once, by the largest constant.

Two layers sharing a weight (``m[2].weight = m[0].weight``) would otherwise be divided twice (ending at ``1/c``).
The shared Parameter is divided by ``max_l c_l`` over every layer ``l`` that uses it (each at its own input sizes),
which makes each of them 1-Lipschitz; every member reports that shared constant.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._reparam import raw_weight


def tied_groups(layers: Mapping[str, nn.Module]) -> dict[str, list[str]]:
    """``{name: every layer (in order) sharing its raw weight Parameter}`` for the layers that share one."""
    by_weight: dict[int, list[str]] = {}
    for name, layer in layers.items():
        by_weight.setdefault(id(raw_weight(layer)), []).append(name)
    return {n: group for group in by_weight.values() if len(group) > 1 for n in group}


def with_tied(names: list[str], groups: Mapping[str, list[str]]) -> list[str]:
    """``names`` and every layer tied to one of them, in the order of first appearance."""
    out: dict[str, None] = {}
    for name in names:
        out.update(dict.fromkeys(groups.get(name, [name])))
    return list(out)


def combine(constants: Mapping[str, Tensor], groups: Mapping[str, list[str]]) -> dict[str, Tensor]:
    """Each tied layer's constant replaced by the max over the members of its group present in ``constants``."""
    out = dict(constants)
    for name in constants:
        members = [m for m in groups.get(name, ()) if m in constants]
        if len(members) > 1:
            out[name] = torch.stack([constants[m] for m in members]).amax()
    return out
