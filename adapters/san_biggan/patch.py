"""``patch_discriminator``: SN → SAN in an already-built BigGAN / BigGAN-deep / mmagic BigGAN D, in place.

Each ajbrock-style SN layer (found by duck typing: ``u0``/``sv0`` buffers, ``num_svs``) is replaced by
the matching SAN layer holding the *same* ``weight``/``bias`` Parameter objects, so ``D.optim`` (and
its Adam moments) stays valid. :meth:`DiscriminatorPatch.unpatch` puts the original module objects
back; SN is invariant to the scale SAN changed (``W/σ(W)``), so the SN D computes what it did before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from san_core import select_layers, unwrap_model

from .errors import SANBigGANError
from .layers import LAYER_KINDS, is_ajbrock_sn, layer_kind, san_layer_from
from .normalizer import BigGANSAN
from .options import SANOptions

_AUTO = "auto"


@dataclass
class DiscriminatorPatch:
    """What :func:`patch_discriminator` changed; :meth:`unpatch` is its exact inverse."""

    module: nn.Module
    san: BigGANSAN
    replaced: dict[str, tuple[nn.Module, nn.Module]] = field(default_factory=dict)  # name -> (SN, SAN)
    saved_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.replaced)

    def unpatch(self) -> list[str]:
        """Remove SAN's hooks and put every original SN layer (and ``D_param``/``san``) back."""
        self.san.remove()
        restore_modules(self.module, {n: sn for n, (sn, _) in self.replaced.items()})
        for key, value in self.saved_attrs.items():
            if value is _MISSING:
                self.module.__dict__.pop(key, None)
            else:
                setattr(self.module, key, value)
        names, self.replaced, self.saved_attrs = list(self.replaced), {}, {}
        return names


_MISSING = object()


def restore_modules(root: nn.Module, modules: Mapping[str, nn.Module]) -> None:
    """Set each dotted ``name`` under ``root`` to the given module object."""
    for name, module in modules.items():
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        parent._modules[child] = module


def find_sn_layers(module: nn.Module, kinds: Sequence[str], targets: Any = None, exclude: Any = None) -> list[str]:
    """Names of ajbrock-SN layers of the given kinds among the layers ``targets``/``exclude`` select."""
    named = dict(module.named_modules())
    try:
        matched = select_layers(module, targets, exclude=exclude, what="patch_discriminator").matched
    except ValueError as err:
        raise SANBigGANError(str(err)) from None
    return [n for n in matched if is_ajbrock_sn(named[n]) and layer_kind(named[n]) in kinds]


def default_example_input(module: nn.Module) -> Optional[tuple[Tensor, Tensor]]:
    """``(x, y)`` zeros for a D with an int ``resolution`` (BigGAN) or ``input_scale`` (mmagic), else None."""
    size = getattr(module, "resolution", None) or getattr(module, "input_scale", None)
    params = [p for p in module.parameters() if p.is_floating_point()]
    if not isinstance(size, int) or isinstance(size, bool) or not params:
        return None
    channels = getattr(module, "in_channels", 3)
    channels = channels if isinstance(channels, int) else 3
    x = torch.zeros(1, channels, size, size, dtype=params[0].dtype, device=params[0].device)
    return x, torch.zeros(1, dtype=torch.long, device=params[0].device)


def patch_discriminator(
    D: nn.Module,
    *,
    layers: Sequence[str] = LAYER_KINDS,
    targets: Any = None,
    exclude: Any = None,
    optimizer: Union[torch.optim.Optimizer, str, None] = _AUTO,
    example_input: Union[Tensor, tuple, str, None] = _AUTO,
    input_sizes: Optional[dict[str, Sequence[int]]] = None,
    interval: int = 1,
    filter_ratio: float = 1.0,
    gain: Optional[float] = None,
    stride_mode: str = "paper",
    seed: int = 0,
) -> DiscriminatorPatch:
    """Replace D's SN layers by SAN layers in place and normalize once per ``optimizer`` step.

    Args:
        D: a built BigGAN / BigGAN-deep ``Discriminator`` or mmagic ``BigGANDiscriminator``
            (``sn_style='ajbrock'``), possibly wrapped in ``DataParallel``.
        layers: SN kinds to replace (``"conv"``, ``"linear"``, ``"embedding"``).
        targets, exclude: optional glob patterns on layer names (``san_core.select_layers``).
        optimizer: ``"auto"`` = ``D.optim`` when it exists; an optimizer; or ``None`` (call
            ``patch.san.normalize_()`` yourself).
        example_input: ``"auto"`` = zeros at ``D.resolution`` (or ``D.input_scale``) with label 0, used
            to learn conv input sizes and normalize at once; a tensor/tuple; or ``None`` (each layer is
            normalized just before its first forward).
        input_sizes, interval, filter_ratio, gain, stride_mode, seed: see :class:`SANOptions`/``SAN``.

    Everything is checked before D changes; on error D is left as it was.
    """
    kinds = (layers,) if isinstance(layers, str) else tuple(layers)
    options = SANOptions(interval, filter_ratio, gain, stride_mode, seed, kinds).validate()
    inner = unwrap_model(D)
    if isinstance(inner.__dict__.get("san"), BigGANSAN):
        raise SANBigGANError(f"patch_discriminator: {type(inner).__name__} already has SAN; unpatch it first")
    if optimizer == _AUTO:
        found = getattr(inner, "optim", None)
        optimizer = found if isinstance(found, torch.optim.Optimizer) else None
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise SANBigGANError(f"patch_discriminator: expected optimizer to be an Optimizer, got {type(optimizer)}")
    names = find_sn_layers(inner, options.layers, targets, exclude)
    if not names:
        raise SANBigGANError(
            f"patch_discriminator: nothing to patch: expected ajbrock-style SN layers ({'/'.join(options.layers)}: "
            f"classes with u0/sv0 buffers) in {type(inner).__name__}, found none"
        )
    if isinstance(example_input, str):
        if example_input != _AUTO:
            raise SANBigGANError(
                f"patch_discriminator: expected example_input 'auto', a tensor or tuple, got {example_input!r}"
            )
        example_input = default_example_input(inner)
    named = dict(inner.named_modules())
    replacements = {n: san_layer_from(named[n]) for n in names}
    patch = DiscriminatorPatch(inner, san=None, replaced={n: (named[n], replacements[n]) for n in names})  # type: ignore[arg-type]
    restore_modules(inner, replacements)
    try:
        patch.san = BigGANSAN(inner, names, options, example_input=example_input, input_sizes=input_sizes)
        if optimizer is not None:
            patch.san.attach(optimizer)
    except BaseException:
        if patch.san is not None:
            patch.san.remove()
        restore_modules(inner, {n: sn for n, (sn, _) in patch.replaced.items()})
        raise
    for key, value in (("D_param", "SAN"), ("san", patch.san)):
        if key == "san" or hasattr(inner, key):
            patch.saved_attrs[key] = inner.__dict__.get(key, _MISSING)
            inner.__dict__[key] = value
    return patch
