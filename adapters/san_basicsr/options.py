"""The ``san:`` block of a SAN discriminator in a BasicSR option file, and its checks.

::

    network_d:
      type: UNetDiscriminatorSAN      # or VGGStyleDiscriminatorSAN, SRCriticSAN
      num_in_ch: 3                    # ... the upstream arch's own arguments ...
      san:                            # optional; every key optional
        filter_ratio: 0.25            # r, fraction of the m·n kernels searched (1 = exact)
        gain: ~                       # g, ~ = Eq. 9's compensation for r
        interval: 1                   # normalize after every N-th real optimizer_d step
        stride_mode: paper            # or exact
        targets: ~                    # glob(s) on net_d's layer names; ~ = the arch's default layers
        exclude: ~
        seed: 0
        circular_padding: true
        log_constants: true           # san/<layer> in BasicSR's log at print_freq
        form: rescale                 # or reparametrize (the authors' W / s)
        sync_free: ~                  # ~ = on for CUDA weights; true / false
        compile_step: false           # torch.compile(fullgraph=True) of the sync-free step
        cuda_graph: false             # CUDA graph of the sync-free step (CUDA only)

``form``, ``sync_free``, ``compile_step`` and ``cuda_graph`` are accepted when the installed ``san_core.SAN`` takes
them. Every value is
checked by ``san_core`` itself (on a throwaway layer), so the messages match the library's.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Mapping
from typing import Any, Optional

from torch import nn

from san_core import SAN

__all__ = ["KEYS", "SANOptionError", "SANOptions", "check_network_d", "parse_san_block"]

#: The ``san:`` keys handed to :class:`san_core.SAN` when it takes them (defaults: SAN's own).
_SAN_KWARGS = (
    "interval", "filter_ratio", "gain", "stride_mode", "seed", "form", "sync_free", "compile_step", "cuda_graph"
)  # fmt: skip
_OWN: dict[str, Any] = {"targets": None, "exclude": None, "circular_padding": True, "log_constants": True}
KEYS = (*_OWN, *_SAN_KWARGS)


class SANOptionError(ValueError):
    """A ``network_d.san`` option is invalid; the message is one line naming the key, what was expected and got."""


def _defaults() -> dict[str, Any]:
    """``{key: SAN's default}`` for the keys of :data:`_SAN_KWARGS` that the installed ``SAN`` takes."""
    params = inspect.signature(SAN).parameters
    return {k: params[k].default for k in _SAN_KWARGS if k in params}


def _patterns(where: str, key: str, value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(p, str) and p for p in items):
        raise SANOptionError(f"{where}.{key}: expected ~, a glob string or a list of glob strings, got {value!r}")
    return tuple(items)


@dataclasses.dataclass(frozen=True)
class SANOptions:
    """Validated ``network_d.san`` values (paper symbols: ``r`` = filter_ratio, ``g`` = gain)."""

    targets: Optional[tuple[str, ...]] = None
    exclude: Optional[tuple[str, ...]] = None
    circular_padding: bool = True
    log_constants: bool = True
    san_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def as_yaml(self) -> dict[str, Any]:
        """The options as a ``san:`` block (for logs)."""
        own = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {**{k: own[k] for k in _OWN}, **dict(self.san_kwargs)}


def parse_san_block(block: Any, where: str = "network_d.san") -> SANOptions:
    """Check a ``san:`` block (None = all defaults); raises :class:`SANOptionError` with one line."""
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise SANOptionError(f"{where}: expected a mapping of SAN options, got {block!r}")
    defaults = _defaults()
    known = [*_OWN, *defaults]
    for key in block:
        if key not in known:
            if key in _SAN_KWARGS:
                raise SANOptionError(f"{where}.{key}: this san_core's SAN has no {key!r} option (update san_core)")
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise SANOptionError(f"{where}: unknown SAN option {key!r}; {hint}expected one of {', '.join(known)}")
    for key in ("circular_padding", "log_constants"):
        if key in block and not isinstance(block[key], bool):
            raise SANOptionError(f"{where}.{key}: expected true or false, got {block[key]!r}")
    san_kwargs = {k: block.get(k, default) for k, default in defaults.items()}
    try:  # san_core's own checks and messages, on a throwaway layer
        SAN(nn.Sequential(nn.Linear(1, 1)), **san_kwargs).remove()
    except (ValueError, TypeError) as err:
        raise SANOptionError(f"{where}: {str(err).replace('SAN: ', '', 1)}") from None
    return SANOptions(
        targets=_patterns(where, "targets", block.get("targets")),
        exclude=_patterns(where, "exclude", block.get("exclude")),
        circular_padding=block.get("circular_padding", True),
        log_constants=block.get("log_constants", True),
        san_kwargs=san_kwargs,
    )


def check_network_d(opt: Mapping[str, Any], san_archs: Mapping[str, Any]) -> Optional[SANOptions]:
    """Check ``opt['network_d']`` at option-parsing time: its ``san:`` block (for a SAN arch) or a misplaced one."""
    stray = [k for k in opt if isinstance(k, str) and k.lower().startswith("san")]
    if stray:
        raise SANOptionError(f"{stray[0]}: SAN options go in a san: block under network_d, not at the top level")
    net = opt.get("network_d")
    if not isinstance(net, Mapping):
        return None
    kind = net.get("type")
    if kind in san_archs:
        return parse_san_block(net.get("san"))
    if "san" in net:
        raise SANOptionError(
            f"network_d.san: {kind} is not a SAN arch; use one of {', '.join(san_archs)} (same arguments plus san:)"
        )
    return None
