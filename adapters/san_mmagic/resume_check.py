"""After a resume: do the critic's weights match the SAN state that was restored with them?

A checkpoint's SAN state describes normalized weights. When the weights themselves did not load, e.g.
a DDP checkpoint (``discriminator.module.*`` keys) resumed in one process, MMEngine only warns about
the keys and the critic keeps its fresh initialization (constants 0.2–1.1), which SAN would then treat
as normalized. ``SANHook`` saves each SAN layer's weight norm with its state; after loading,
:func:`mismatched` compares them (exact up to float rounding, whatever ``filter_ratio``). For a
checkpoint without the norms, :func:`off_layers` checks SAN's constants against 1 (only with
``filter_ratio = 1``: with kernel subsets a fresh subset's constant legitimately differs). Both leave
SAN's generator and power vectors as they were, so a resumed run that is fine stays bit-for-bit identical.
"""

from __future__ import annotations

from typing import Optional, cast

from mmengine.logging import print_log
from torch import Tensor, nn

from san_core import SAN

__all__ = ["mismatched", "off_layers", "renormalize_if_needed", "weight_norms"]


def off_layers(san: SAN, tolerance: float) -> dict[str, float]:
    """``{layer: constant}`` of the layers whose current constant is off 1 by more than ``tolerance``.

    The constants are SAN's own (:meth:`SAN.constants`: same subsets, gains and layer gains as the next
    normalization); SAN's generator state and power vectors are put back afterwards. Layers whose conv
    input size is not known yet are skipped (they normalize at their first forward anyway).
    """
    names = [n for n, m in san.layers.items() if n in san.input_sizes or not isinstance(m, nn.modules.conv._ConvNd)]
    if not names:
        return {}
    rng_state = san.generator.get_state()
    vectors = {n: u.clone() for n, u in san.power_vectors.items()}
    try:
        constants = san.constants(names)
    finally:
        san.generator.set_state(rng_state)
        for n in set(san.power_vectors) - set(vectors):
            del san.power_vectors[n]
        for n, u in vectors.items():
            san.power_vectors[n].copy_(u)
    values = {n: float(c) for n, c in constants.items()}
    return {n: c for n, c in values.items() if abs(c - 1.0) > tolerance}


def weight_norms(san: SAN) -> dict[str, float]:
    """Each SAN layer's weight norm ‖W‖_F (saved with the state)."""
    return {n: float(cast(Tensor, m.weight).detach().float().norm()) for n, m in san.layers.items()}


def mismatched(san: SAN, saved: dict[str, float], rtol: float = 1e-5) -> dict[str, float]:
    """``{layer: current norm / saved norm}`` of the layers whose weight norm is not the saved one."""
    now = weight_norms(san)
    return {n: now[n] / v if v else float("inf") for n, v in saved.items() if n in now and abs(now[n] - v) > rtol * v}


def renormalize_if_needed(san: SAN, saved_norms: Optional[dict[str, float]], tolerance: float) -> dict[str, float]:
    """The check (norms if saved, else constants when ``filter_ratio = 1``); if any layer is off, a warning and
    one forced (uncounted) normalization. Returns ``{layer: norm ratio or constant}`` of the layers found off."""
    if saved_norms:
        off, what = mismatched(san, saved_norms), "weight norm / saved norm"
    elif san.config["filter_ratio"] == 1:
        off, what = off_layers(san, tolerance), f"constant, tolerance {tolerance}"
    else:
        return {}
    if off:
        worst = max(off, key=lambda n: abs(off[n] - 1))
        print_log(
            f"SANHook: after loading, {len(off)} of {len(san.layers)} SAN layers do not match the restored SAN state "
            f"(worst: {worst}, {what} {off[worst]:.4g}); their weights did not come with that state (e.g. a DDP "
            "checkpoint's 'module.' keys resumed in one process); normalizing them",
            logger="current",
            level=30,
        )
        san.normalize_(force=True)
    return off
