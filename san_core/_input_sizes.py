"""The input-size side of :class:`~san_core.SAN`: which grids each selected conv is normalized for.

``‖W‖₀,∞`` (Lemma 1) depends on the conv's input map. :class:`InputSizes` (a base of ``SAN``) holds the sizes given
at construction (``input_sizes``), learned from an ``example_input``, or recorded by the forward pre-hooks
(:class:`san_core._sizes.SizeHook`): the latest size of each conv (``input_sizes``) and every recorded one
(``seen_sizes``, at most :data:`san_core._sizes.MAX_SIZES`); a conv's constant is the max over them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from . import _sizes
from ._reparam import raw_weight
from ._validate import check_size

Size = tuple[int, ...]


class InputSizes:
    """Input-size bookkeeping and its public methods (:meth:`sizes_of`, :meth:`sizes_known`, :meth:`forget_sizes`)."""

    module: nn.Module
    layers: dict[str, nn.Module]
    config: dict[str, Any]
    input_sizes: dict[str, Size]  # the latest size of each conv
    seen_sizes: dict[str, list[Size]]  # every recorded size, least recent first
    _warned: set[str]  # layers already warned about a change of size
    _pending: set[str]  # layers to normalize at their first forward

    def _init_sizes(self, input_sizes: Optional[Mapping[str, Sequence[int]]]) -> None:
        """The sizes given to the constructor, each checked against its conv."""
        self.input_sizes, self.seen_sizes, self._warned = {}, {}, set()
        for name, size in (input_sizes or {}).items():
            conv = self.layers.get(name)
            if not isinstance(conv, nn.modules.conv._ConvNd):
                raise ValueError(f"SAN: input_sizes names {name!r}, which is not a selected conv layer")
            self.input_sizes[name] = check_size(name, conv, size, self.config["stride_mode"])
            self.seen_sizes[name] = [self.input_sizes[name]]

    def _on_forward(self, name: str, layer: nn.Module, args: tuple) -> None:
        """The forward pre-hook's work: record a new input size (checked first), run a pending normalization."""
        size = _sizes.input_size(layer, args, raw_weight(layer).dim() - 2)
        if size is not None and self.input_sizes.get(name) != size:
            assert isinstance(layer, nn.modules.conv._ConvNd)
            size = check_size(name, layer, size, self.config["stride_mode"])  # raises before recording
            _sizes.record(self.seen_sizes.setdefault(name, []), size, name, self._warned)
            self.input_sizes[name] = size
        if name in self._pending:
            self._normalize_pending(name)

    def _normalize_pending(self, name: str) -> None:
        """Normalize layer ``name`` (and the layers tied to it) at its first forward (``SAN`` implements it)."""
        raise NotImplementedError

    def sizes_of(self, name: str) -> list[Size]:
        """Every recorded input size of conv ``name`` (sorted); its constant is the max over them."""
        sizes = set(self.seen_sizes.get(name, ()))
        if name in self.input_sizes:
            sizes.add(self.input_sizes[name])
        return sorted(sizes)

    def sizes_known(self) -> set[str]:
        """The selected layers whose constant can be computed now (Linear/Embedding, and convs with a size)."""
        return {n for n, m in self.layers.items() if not isinstance(m, nn.modules.conv._ConvNd) or self.sizes_of(n)}

    def forget_sizes(self, names: Optional[Sequence[str]] = None) -> dict[str, list[Size]]:
        """Keep only the latest input size of ``names`` (default: every conv); returns the sizes forgotten."""
        names = list(self.layers) if names is None else list(names)
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise ValueError(f"SAN.forget_sizes: {unknown} are not selected layers; selected: {list(self.layers)}")
        forgotten = {}
        for name in [n for n in names if n in self.input_sizes]:  # convs with a known size
            latest = self.input_sizes[name]
            old = [s for s in self.sizes_of(name) if s != latest]
            if old:
                forgotten[name] = old
            self.seen_sizes[name] = [latest]
        return forgotten

    def _probe(self, example_input: Union[Tensor, tuple]) -> None:
        """Run the module once on ``example_input`` (eval, ``no_grad``, no pending normalization) to record sizes;
        training flags are restored afterwards."""
        flags = {m: m.training for m in self.module.modules()}
        pending, self._pending = self._pending, set()
        try:
            self.module.eval()
            with torch.no_grad():
                self.module(*example_input) if isinstance(example_input, tuple) else self.module(example_input)
        finally:
            self._pending = pending
            for m, flag in flags.items():
                m.training = flag
