"""``SANHook``'s checks of the options it passes to :class:`san_core.SAN` (raised in ``__init__``, at config build)."""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from san_core import SAN


def check_san_options(
    san_kwargs: dict[str, Any], layer_gains: Optional[dict[str, float]], resume_tolerance: Optional[float]
) -> None:
    """san_core's own validation on a throwaway layer (same rules, same messages with ``SANHook:``); ``layer_gains``:
    each value under its name (the names are checked against the critic's layers in ``before_run``)."""
    if layer_gains is not None and not isinstance(layer_gains, dict):
        raise ValueError(f"SANHook: expected layer_gains to be a dict {{layer: gain}}, got {layer_gains!r}")
    checks = [(san_kwargs, "")] + [(dict(layer_gains={"0": g}), n) for n, g in (layer_gains or {}).items()]
    for kwargs, name in checks:
        try:
            SAN(nn.Sequential(nn.Linear(1, 1)), **kwargs).remove()
        except (ValueError, TypeError) as err:
            message = str(err).replace("SAN:", "SANHook:", 1).replace("{'0':", f"{{{name!r}:")
            raise ValueError(message) from None
    if resume_tolerance is not None and (
        isinstance(resume_tolerance, bool) or not isinstance(resume_tolerance, (int, float)) or resume_tolerance <= 0
    ):
        raise ValueError(f"SANHook: expected resume_tolerance to be None or a number > 0, got {resume_tolerance!r}")
