"""SAN's state beside BasicSR's ``net_d`` checkpoints, and spectral-norm ``net_d`` checkpoints loaded into SAN archs.

- Whenever the model saves (``model.save(epoch, iter)`` writes ``models/net_d_<iter>.pth``, or
  ``net_d_latest.pth`` at the end), :func:`save_state` writes ``models/net_d_<iter>_san.pth`` beside it
  (rank 0 only, like BasicSR): SAN's step count, kernel-subset generator, conv input sizes and
  pending layers (:meth:`san_core.SAN.state_dict`; the normalized weights are in ``net_d_<iter>.pth``).
- When ``net_d`` was loaded from a file (BasicSR's resume sets ``path.pretrain_network_d`` to
  ``net_d_<iter>.pth``), :func:`restore_state` loads the ``_san.pth`` beside it, so a resumed run continues
  with SAN's state bit for bit and without renormalizing. Without one (an SN checkpoint, a D trained
  without SAN) it logs a warning and SAN starts afresh: every layer is normalized before its first forward.
- :func:`convert_spectral_norm_on_load`, a ``load_state_dict`` pre-hook of every SAN arch, turns the
  spectral-norm keys of e.g. an official ``UNetDiscriminatorSN`` ``net_d`` (``weight_orig``/``weight_u``/
  ``weight_v``) into the SAN arch's (``san_core.convert_spectral_norm_state_dict``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from torch import nn

from san_core import SAN, convert_spectral_norm_state_dict, to_reparametrized_keys

__all__ = ["FORMAT_VERSION", "convert_spectral_norm_on_load", "restore_state", "san_path", "save_state"]

FORMAT_VERSION = 1
_SN_MARKERS = (".weight_orig", ".parametrizations.weight.original")


def san_path(net_d_path: str) -> str:
    """``.../net_d_<iter>.pth`` -> ``.../net_d_<iter>_san.pth``."""
    root, ext = os.path.splitext(net_d_path)
    return f"{root}_san{ext or '.pth'}"


def _logger() -> logging.Logger:
    """BasicSR's logger, without initializing it (``get_root_logger()`` would, and BasicSR's log file would be lost)."""
    return logging.getLogger("basicsr")


def convert_spectral_norm_on_load(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: map spectral-norm keys under ``prefix`` to this SAN arch's keys, in place."""
    ours = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not any(marker in f".{k}" for k in ours for marker in _SN_MARKERS):
        return
    converted = convert_spectral_norm_state_dict(ours)
    if converted.keys() == ours.keys():
        return
    converted = to_reparametrized_keys(converted, module.state_dict())  # SAN's reparametrized form: raw W there
    for key in ours:
        del state_dict[prefix + key]
    state_dict.update({prefix + k: v for k, v in converted.items()})
    layers = sorted({k.rsplit(".", 1)[0] for k in ours if k.endswith("weight_orig")})
    _logger().info(
        f"san_basicsr: {type(module).__name__}: converted the spectral-norm keys of {len(layers) or 'the'} layers "
        f"{layers} (weight_orig -> weight, u/v dropped); SAN normalizes them before their first forward"
    )


def save_state(san: SAN, models_dir: str, current_iter: int, arch: str) -> Optional[str]:
    """Write ``net_d_<iter|latest>_san.pth`` (rank 0 only); returns the path (None on other ranks)."""
    from basicsr.utils.dist_util import get_dist_info

    if get_dist_info()[0] != 0:
        return None
    label = "latest" if current_iter == -1 else current_iter
    path = san_path(os.path.join(models_dir, f"net_d_{label}.pth"))
    torch.save({"version": FORMAT_VERSION, "arch": arch, "state": san.state_dict()}, path)
    return path


def restore_state(san: SAN, opt: dict, arch: str) -> str:
    """Load the SAN state beside ``path.pretrain_network_d`` if any; returns what happened (for the log)."""
    net_d_path = (opt.get("path") or {}).get("pretrain_network_d")
    resuming = bool((opt.get("path") or {}).get("resume_state"))
    if not net_d_path:
        return "fresh start: each SAN layer is normalized before its first forward"
    path = san_path(net_d_path)
    if not os.path.isfile(path):
        message = (
            f"no SAN state beside {net_d_path} (expected {path}; a D trained without SAN?): SAN starts afresh, each "
            "layer normalized before its first forward"
        )
        _logger().warning(f"san_basicsr: {message}")
        return message
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected a san_basicsr SAN state (version {FORMAT_VERSION}), got another file")
    if saved.get("arch") != arch:
        raise ValueError(f"{path}: SAN state of a {saved.get('arch')}, but net_d is a {arch}")
    current = dict(san.config)
    san.load_state_dict(saved["state"])
    changed = {k: (san.config[k], v) for k, v in current.items() if k != "layer_gains" and san.config.get(k) != v}
    if changed:  # the option file's values win over the saved ones
        san.config.update({k: new for k, (_, new) in changed.items()})
        diff = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        _logger().warning(f"san_basicsr: the option file's SAN options differ from {path}'s; using the file's ({diff})")
    return f"{'resumed' if resuming else 'loaded'} SAN state from {path} (step {san.calls})"
