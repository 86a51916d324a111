"""The eager path of :class:`~san_core.SAN` (``sync_free`` off, and first-forward normalizations): every constant
computed and checked on the host before any weight changes, then applied.

:class:`EagerPath` (a base of ``SAN``) checks that each weight is finite and each conv's input size known, computes
the constants (:func:`san_core._eager.constant_of`: ``g_l`` × ``‖W‖₀,∞`` over the recorded sizes, or ``σ₁``; a
tied weight gets the max of its layers', :mod:`san_core._tied`), refuses NaN/Inf constants with the subset
generator and power vectors rolled back, and applies them: ``W ← W / c`` (form ``"rescale"``) or ``s ← c``
(``"reparametrize"``). The sync-free path (:mod:`san_core._sync_free`) does the same on the device without syncs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from . import _eager, _guard, _tied
from ._reparam import InverseScale
from ._reparam import raw_weight as _weight


class EagerPath:
    """:meth:`constants` (public) and the checks and rescale behind ``SAN.normalize_`` on the eager path."""

    layers: dict[str, nn.Module]
    config: dict[str, Any]
    input_sizes: dict[str, tuple[int, ...]]
    generator: torch.Generator
    power_vectors: dict[str, Tensor]
    scales: dict[str, InverseScale]

    def constants(self, names: Optional[Sequence[str]] = None) -> dict[str, Tensor]:
        """The constants of ``names`` (default: every selected layer) before any rescale; changes no weight.

        Checks first that every weight is finite and every conv's input size is known. A weight shared by
        several of ``names`` gets the max of their constants (:mod:`san_core._tied`). With
        ``filter_ratio < 1`` it draws new subsets and with ``linear_method="power"`` it advances the
        power iteration, like a normalization does; on any error both are rolled back.
        """
        names = list(self.layers) if names is None else list(names)
        self._check_ready(names)
        groups = _tied.tied_groups(self.layers)
        rng_state = self.generator.get_state()
        vectors = {n: u.clone() for n, u in self.power_vectors.items()}
        try:
            constants = _tied.combine({name: _eager.constant_of(self, name) for name in names}, groups)
            self._check_finite(constants)
        except BaseException:
            self.generator.set_state(rng_state)
            for n in set(self.power_vectors) - set(vectors):
                del self.power_vectors[n]
            for n, u in vectors.items():
                self.power_vectors[n].copy_(u)
            raise
        return constants

    def _check_ready(self, names: Sequence[str]) -> None:
        for name in names:
            if isinstance(self.layers[name], nn.modules.conv._ConvNd) and name not in self.input_sizes:
                raise RuntimeError(
                    f"SAN: input size of conv {name!r} is unknown; run a forward pass first, or pass "
                    f"example_input=... or input_sizes={{{name!r}: (H, W)}}"
                )
        bad = _guard.non_finite({n: _weight(self.layers[n]) for n in names})
        if bad:
            raise ValueError(f"SAN: layers {bad} have NaN/Inf weights; nothing was changed")

    def _check_finite(self, constants: Mapping[str, Tensor]) -> None:
        bad = _guard.non_finite(constants)
        if bad:
            raise ValueError(f"SAN: NaN/Inf constant for layers {bad} (overflow?); nothing was changed")

    def _rescale(self, constants: Mapping[str, Tensor]) -> None:
        """``W ← W / c`` (form ``"rescale"``) or ``s ← c`` (``"reparametrize"``), ``c`` clamped to ``eps``."""
        done: set[int] = set()  # a tied weight is divided once (its constants are already combined)
        with torch.no_grad():
            for name, constant in constants.items():
                scale = self.scales.get(name)
                weight = _weight(self.layers[name])
                if scale is not None:
                    scale.s.copy_(constant.clamp_min(self.config["eps"]))
                elif id(weight) not in done:
                    done.add(id(weight))
                    weight.div_(constant.clamp_min(self.config["eps"]).to(weight.dtype))
