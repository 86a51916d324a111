"""``SANHook``'s checks of the options it passes to :class:`san_core.SAN` (raised in ``__init__``, at config build)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from torch import nn

from san_core import SAN

Patterns = Union[str, Sequence[str], None]


def check_patterns(key: str, value: Patterns) -> Optional[list[str]]:
    """A glob string or a non-empty list of them (as a list), or None."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) and p for p in items) or not items:
        raise ValueError(f"SANHook: expected {key} to be None, a glob string or a list of glob strings, got {value!r}")
    return list(items)


def check_flag(key: str, value: Any) -> bool:
    """A bool option (``circular_padding``, ``strip_spectral_norm``, ``diagnostics``): 1 or ``'yes'`` is refused."""
    if not isinstance(value, bool):
        raise ValueError(f"SANHook: expected {key} to be True or False, got {value!r}")
    return value


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
