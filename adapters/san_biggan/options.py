"""SAN settings for a BigGAN critic, their validation and their command-line flags (``--san_*``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from torch import nn

from .errors import SANBigGANError
from .layers import LAYER_KINDS

#: Adam β1 of D in the paper's SAN-BigGAN run (BigGAN-PyTorch's own default is 0.0).
PAPER_D_BETA1 = 0.5
#: Why ``--san_form reparametrize`` is refused (one line).
REPARAMETRIZE_REFUSED = (
    "--san_form reparametrize is not supported by san_biggan: its SAN layers keep BigGAN's SN layout (D.pth keys, "
    "sv0) and with Adam16 SAN divides the fp32 master copy of W in place, neither of which a forward W / s fits; "
    "use --san_form rescale (the default)"
)
SYNC_FREE = {"auto": None, "on": True, "off": False}


@dataclass(frozen=True)
class SANOptions:
    """What SAN does to D.

    Args:
        interval: normalize after every ``interval``-th real ``D.optim.step()`` (paper: 1).
        filter_ratio, gain: ``r`` and ``g``: the constant is the max over a random ``⌈m·n·r⌉`` of the
            ``m·n`` kernels, times ``g`` (default Eq. 9's compensation; 1 when ``r = 1``).
        stride_mode: ``"paper"`` or ``"exact"`` (see :func:`san_core.conv_constant`).
        seed: seeds the kernel-subset generator.
        layers: which SN kinds become SAN (``"conv"``, ``"linear"``, ``"embedding"``); the rest keep SN.
        eps: lower clamp of the constant.
        sync_free, compile_step, cuda_graph: as in :class:`san_core.SAN` (``sync_free=None``: on for CUDA weights).
        form: ``"rescale"`` only: ``"reparametrize"`` (a forward ``W / s``) is refused, since this adapter's layers
            keep BigGAN's SN state-dict layout and ``sv0`` buffer and, under ``Adam16``, SAN divides the fp32
            master copy of ``W`` in place; see :data:`REPARAMETRIZE_REFUSED`.
    """

    interval: int = 1
    filter_ratio: float = 1.0
    gain: Optional[float] = None
    stride_mode: str = "paper"
    seed: int = 0
    layers: tuple[str, ...] = field(default=LAYER_KINDS)
    eps: float = 1e-12
    form: str = "rescale"
    sync_free: Optional[bool] = None
    compile_step: bool = False
    cuda_graph: bool = False

    def validate(self) -> SANOptions:
        """Raise :class:`SANBigGANError` naming the bad value; returns ``self``."""
        kinds = tuple(self.layers) if not isinstance(self.layers, str) else (self.layers,)
        if not kinds or any(k not in LAYER_KINDS for k in kinds):
            raise SANBigGANError(f"SAN: expected layers to be a non-empty subset of {LAYER_KINDS}, got {self.layers!r}")
        if self.form == "reparametrize":
            raise SANBigGANError(REPARAMETRIZE_REFUSED)
        try:  # san_core checks its own settings: build (and drop) a SAN on a 1x1 probe layer
            from san_core import SAN

            SAN(nn.Sequential(nn.Conv2d(1, 1, 1)), **self.san_kwargs()).remove()
        except (ValueError, TypeError) as err:
            raise SANBigGANError(str(err)) from None
        return self

    def san_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`san_core.SAN`."""
        kwargs = asdict(self)
        del kwargs["layers"]
        return kwargs


_FLAGS: dict[str, dict[str, Any]] = {
    "--san_interval": dict(type=int, help="normalize after every N-th D optimizer step (default 1)"),
    "--san_filter_ratio": dict(type=float, help="r: fraction of kernels per constant (default 1.0)"),
    "--san_gain": dict(type=float, help="g: gain on the subset maximum (default: Eq. 9 compensation)"),
    "--san_stride_mode": dict(choices=("paper", "exact"), help="constant of strided convs (default paper)"),
    "--san_seed": dict(type=int, help="seed of the kernel-subset generator (default: BigGAN's --seed)"),
    "--san_layers": dict(
        type=str, help="comma list of conv,linear,embedding, or 'all' (default all: every SN layer of D)"
    ),
    "--san_form": dict(choices=("rescale", "reparametrize"), help="rescale (default; reparametrize is refused)"),
    "--san_sync_free": dict(choices=tuple(SYNC_FREE), help="no host-device sync per step (default auto: on CUDA)"),
    "--san_compile_step": dict(action="store_true", help="torch.compile(fullgraph=True) the sync-free step"),
    "--san_cuda_graph": dict(action="store_true", help="CUDA-graph the sync-free step (needs r = 1, CUDA)"),
}
SAN_FLAGS: tuple[str, ...] = tuple(_FLAGS)


def add_san_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--san_*`` flags (all default ``None`` = not given)."""
    for flag, spec in _FLAGS.items():
        parser.add_argument(flag, default=None, **spec)


def parse_layer_kinds(text: str) -> tuple[str, ...]:
    """``"all"`` or a comma list of kinds -> tuple of kinds (validated)."""
    kinds = LAYER_KINDS if text.strip() == "all" else tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in LAYER_KINDS]
    if bad or not kinds:
        raise SANBigGANError(f"--san_layers: expected 'all' or a comma list of {', '.join(LAYER_KINDS)}, got {text!r}")
    return kinds


def options_from_namespaces(namespaces: Sequence[argparse.Namespace], default_seed: int) -> SANOptions:
    """Merge parsed ``--san_*`` values (later namespaces win) into validated :class:`SANOptions`."""
    given: dict[str, Any] = {}
    for ns in namespaces:
        given.update({k: v for k, v in vars(ns).items() if k.startswith("san_") and v is not None})
    return SANOptions(
        interval=given.get("san_interval", 1),
        filter_ratio=given.get("san_filter_ratio", 1.0),
        gain=given.get("san_gain"),
        stride_mode=given.get("san_stride_mode", "paper"),
        seed=given.get("san_seed", default_seed),
        layers=parse_layer_kinds(given.get("san_layers", "all")),
        form=given.get("san_form", "rescale"),
        sync_free=SYNC_FREE[given.get("san_sync_free", "auto")],
        compile_step=bool(given.get("san_compile_step", False)),
        cuda_graph=bool(given.get("san_cuda_graph", False)),
    ).validate()


def given_flags(namespaces: Sequence[argparse.Namespace]) -> list[str]:
    """The ``--san_*`` flags that were given a value."""
    return sorted(
        {f"--{k}" for ns in namespaces for k, v in vars(ns).items() if k.startswith("san_") and v is not None}
    )
