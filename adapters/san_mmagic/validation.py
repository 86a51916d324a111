"""Validation for offline and short runs: ``--no-val``, and a one-line error when Inception weights are missing.

mmagic's FID/IS metrics load Inception when the validation loop is built (at the start of training),
from ``inception_path`` or, for the default ``inception_style='StyleGAN'``, from mmagic's cache
(``~/.cache/openmmlab/mmagic/inception-2015-12-05.pt``), downloading it when absent. Offline that ends
in ``RuntimeError: Cannot Load Inception Model`` after a long log. :func:`check_inception` finds the
missing file before anything is built; :func:`disable_validation` is what ``--no-val`` does. Needs no MMEngine.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

__all__ = ["INCEPTION_METRICS", "MissingInceptionError", "check_inception", "disable_validation"]

INCEPTION_METRICS = ("FrechetInceptionDistance", "FID-Full", "FID", "TransFID", "InceptionScore", "IS", "TransIS")
TERO_INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
NO_VAL_HINT = "pass --no-val to train without validation (offline or short runs)"


class MissingInceptionError(FileNotFoundError):
    """FID/IS validation needs Inception weights that are not on disk; the message names ``--no-val``."""


def _cache_dir() -> str:
    return os.path.expanduser("~") + "/.cache/openmmlab/mmagic/"  # mmagic.utils.MMAGIC_CACHE_DIR


def _metrics(evaluator: Any) -> list[Mapping]:
    if isinstance(evaluator, Mapping):
        metrics = evaluator.get("metrics", [evaluator] if "type" in evaluator else [])
    else:
        metrics = evaluator or []
    if isinstance(metrics, Mapping):
        metrics = [metrics]
    out: list[Mapping] = []
    for item in metrics:
        out += _metrics(item) if isinstance(item, (list, tuple)) else [item] if isinstance(item, Mapping) else []
    return out


def check_inception(cfg: Mapping) -> None:
    """Raise :class:`MissingInceptionError` if the config validates with FID/IS and Tero's Inception is not on disk.

    Metrics with ``inception_style='PyTorch'`` (torchvision weights from torch's hub cache) are not checked.
    """
    if not cfg.get("val_dataloader") or not cfg.get("val_cfg"):
        return
    for metric in _metrics(cfg.get("val_evaluator")):
        kind = str(metric.get("type", "")).split(".")[-1].split("::")[-1]
        if kind not in INCEPTION_METRICS or metric.get("inception_style", "StyleGAN") != "StyleGAN":
            continue
        path = metric.get("inception_path") or TERO_INCEPTION_URL
        local = os.path.join(_cache_dir(), path.split("/")[-1]) if "http" in path else path
        if not os.path.isfile(local):
            raise MissingInceptionError(
                f"val_evaluator: {kind} needs Inception weights, not found at {local!r} (nothing is downloaded); "
                f"{NO_VAL_HINT}, or put {TERO_INCEPTION_URL.split('/')[-1]} there (from {TERO_INCEPTION_URL}) or set "
                "the metric's inception_path"
            )


def disable_validation(cfg: Any) -> None:
    """No validation loop (so no FID/IS, no Inception) and no best-checkpoint rules that need its metrics."""
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    checkpoint = cfg.get("default_hooks", {}).get("checkpoint")
    if isinstance(checkpoint, dict):  # mmengine's ConfigDict is a dict
        checkpoint.pop("save_best", None)
        checkpoint.pop("rule", None)
