"""Which discriminator convs SAN takes: SPADE's middle convs by default, optionally the first and last.

SPADE's ``NLayerDiscriminator`` stacks blocks ``model0 … modelN``: ``model0`` and ``modelN`` hold a plain
conv, the blocks between hold ``norm_layer(conv)`` – for ``norm_D=spectralinstance`` a
``Sequential(spectral_norm(conv), InstanceNorm2d(affine=False))``. ``MultiscaleDiscriminator`` holds
``num_D`` such stacks. Convs are grouped per stack (the module owning the ``model<k>`` children); the
first and last conv of each group are its "first/last", the rest its "middle".
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from torch import nn

from san_core import spectral_norm_style

from .errors import SanSpadeError
from .options import SanSpadeOptions

_BLOCK = re.compile(r"^model\d+$")


@dataclass
class LayerPlan:
    """The D convs by role, the SAN selection, and the norms to drop (``{conv name: norm name}``)."""

    first_last: list[str] = field(default_factory=list)
    middle: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    norms_to_drop: dict[str, str] = field(default_factory=dict)
    spectral_norm: dict[str, str] = field(default_factory=dict)


def _group(name: str) -> str:
    parts = name.split(".")
    for i, part in enumerate(parts):
        if _BLOCK.match(part):
            return ".".join(parts[:i])
    return ""


def _following_norm(named: dict[str, nn.Module], conv_name: str) -> str | None:
    """The InstanceNorm right after ``conv_name`` in its ``Sequential`` (SPADE's ``norm_layer`` output)."""
    parent_name, _, key = conv_name.rpartition(".")
    parent = named.get(parent_name)
    if not isinstance(parent, nn.Sequential) or not key.isdigit():
        return None
    nxt = parent._modules.get(str(int(key) + 1))
    if isinstance(nxt, nn.modules.instancenorm._InstanceNorm):
        return f"{parent_name}.{int(key) + 1}" if parent_name else str(int(key) + 1)
    return None


def plan_layers(netD: nn.Module, options: SanSpadeOptions) -> LayerPlan:
    """Decide what to patch in ``netD`` (already unwrapped); changes nothing.

    Raises :class:`SanSpadeError` when D has no conv, or when the options leave nothing to patch.
    """
    if not isinstance(netD, nn.Module):
        raise SanSpadeError(f"expected the discriminator to be a torch.nn.Module, got {type(netD).__name__}")
    named = dict(netD.named_modules())
    convs = [n for n, m in named.items() if n and isinstance(m, nn.Conv2d)]
    if not convs:
        raise SanSpadeError(f"the discriminator {type(netD).__name__} has no Conv2d layer: nothing to patch")
    groups: dict[str, list[str]] = {}
    for name in convs:
        groups.setdefault(_group(name), []).append(name)
    plan = LayerPlan()
    for members in groups.values():
        ends = {members[0], members[-1]}
        plan.first_last += [n for n in members if n in ends]
        plan.middle += [n for n in members if n not in ends]
    wanted = [n for n in convs if n in plan.middle or (options.include_first_last and n in plan.first_last)]
    plan.excluded = [n for n in wanted if any(fnmatch.fnmatchcase(n, p) for p in options.exclude)]
    plan.selected = [n for n in wanted if n not in plan.excluded]
    if not plan.selected:
        why = (
            f"excluded by --san-exclude {list(options.exclude)}"
            if plan.excluded
            else "no middle convs (e.g. --n_layers_D 1); add --san-include-first-last"
        )
        raise SanSpadeError(
            f"the discriminator {type(netD).__name__} has nothing to patch: {why}; its convs: {', '.join(convs)}"
        )
    for name in plan.selected:
        style = spectral_norm_style(named[name])
        if style is not None:
            plan.spectral_norm[name] = style
        if options.drop_instance_norm:
            norm = _following_norm(named, name)
            if norm is not None:
                plan.norms_to_drop[name] = norm
    return plan
