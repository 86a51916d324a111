"""The input sizes each selected conv sees, recorded by a picklable forward pre-hook.

A conv's constant ``‖W‖₀,∞`` depends on its input grid. A layer may see several sizes (one conv used at two
resolutions in a forward, multi-resolution or progressive training, an evaluation pass at another size): SAN keeps
every size a layer has seen, at most :data:`MAX_SIZES` of them (the least recently seen is forgotten first;
:meth:`SAN.forget_sizes` keeps only the latest), and normalizes by the **max** of the constants over them, so the
layer is 1-Lipschitz on every recorded grid. A change of size warns once per layer.

The hook is a module-level callable holding a weak reference to its :class:`~san_core.SAN`, so a critic with SAN
applied can be pickled (``torch.save(model)``) and deep-copied. A copy's (or an unpickled model's) hooks are inert:
they never write into the original's SAN, and :func:`~san_core.apply_san` / ``SAN`` on the copy remove them.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Optional

from torch import Tensor, nn

#: At most this many sizes are kept per conv (least recently seen forgotten first).
MAX_SIZES = 8


class SizeHook:
    """Forward pre-hook of one selected layer: records the input size and runs a pending first normalization."""

    def __init__(self, san: Optional[Any], name: str) -> None:
        self._san = weakref.ref(san) if san is not None else None
        self.name = name

    def owner(self) -> Optional[Any]:
        """The live SAN this hook belongs to, or ``None`` (a copied, unpickled or released hook: inert)."""
        return self._san() if self._san is not None else None

    def __call__(self, layer: nn.Module, args: tuple) -> None:
        san = self.owner()
        if san is not None and san.layers.get(self.name) is layer:
            san._on_forward(self.name, layer, args)

    def __reduce__(self) -> tuple:
        return (SizeHook, (None, self.name))

    def __deepcopy__(self, memo: dict) -> SizeHook:
        return SizeHook(None, self.name)


def purge_inert_hooks(layer: nn.Module) -> int:
    """Remove the inert :class:`SizeHook` s a copy or an unpickled model carries; returns how many."""
    stale = [k for k, h in layer._forward_pre_hooks.items() if isinstance(h, SizeHook) and h.owner() is None]
    for key in stale:
        del layer._forward_pre_hooks[key]
        layer._forward_pre_hooks_with_kwargs.pop(key, None)
        getattr(layer, "_forward_pre_hooks_always_called", {}).pop(key, None)
    return len(stale)


def input_size(layer: nn.Module, args: tuple, ndim: int) -> Optional[tuple[int, ...]]:
    """The spatial size of a conv's first positional input (``None`` when there is none)."""
    if isinstance(layer, nn.modules.conv._ConvNd) and args and isinstance(args[0], Tensor):
        return tuple(args[0].shape[-ndim:])
    return None


def record(seen: list[tuple[int, ...]], size: tuple[int, ...], name: str, warned: set[str]) -> None:
    """Add ``size`` (checked) as the most recent of ``seen``; warn once per layer at its first change of size."""
    if size in seen:
        seen.remove(size)
    elif seen and name not in warned:
        warned.add(name)
        warnings.warn(
            f"SAN: layer {name!r} now sees a {size} input, before {seen[-1]}; it is normalized for every recorded "
            f"size (the max of their constants, at most {MAX_SIZES} sizes, least recently seen forgotten first); "
            "san.forget_sizes() keeps only the latest",
            stacklevel=4,
        )
    seen.append(size)
    del seen[:-MAX_SIZES]
