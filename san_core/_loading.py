"""Loaders for ``python -m san_core.inspect``: objects by ``module:name``, critics, checkpoints, batches."""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn


def load_object(spec: str, what: str) -> Any:
    """``"package.module:attr"`` (``attr`` may be dotted) → the object; one clear error otherwise."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"{what}: expected 'package.module:name', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what}: cannot import module {module_name!r} ({exc}); is it on PYTHONPATH?") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))[:12]
            raise ValueError(f"{what}: {module_name!r} has no attribute {attr!r}; it has e.g. {public}")
        obj = getattr(obj, part)
    return obj


def build_critic(spec: str, kwargs: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """An ``nn.Module`` instance named by ``spec``, or a class/factory called with ``kwargs``."""
    obj = load_object(spec, "--critic")
    if isinstance(obj, nn.Module):
        if kwargs:
            raise ValueError(f"--critic: {spec!r} is already a module instance; --kwargs cannot apply")
        return obj
    if not callable(obj):
        raise ValueError(f"--critic: expected an nn.Module, class or factory at {spec!r}, got {type(obj).__name__}")
    critic = obj(**dict(kwargs or {}))
    if not isinstance(critic, nn.Module):
        raise ValueError(f"--critic: {spec!r}(**kwargs) returned {type(critic).__name__}, expected an nn.Module")
    return critic


def load_checkpoint(critic: nn.Module, path: str, key: Optional[str] = None) -> None:
    """Load a state dict (or a dict holding one under ``key``/``state_dict``/``model``), ``module.`` stripped."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ValueError(f"--checkpoint: no file {path!r}") from exc
    state = ckpt
    if isinstance(ckpt, dict):
        for k in [key] if key else ["state_dict", "model", "netD", "discriminator"]:
            if k in ckpt and isinstance(ckpt[k], dict):
                state = ckpt[k]
                break
        else:
            if key:
                raise ValueError(f"--checkpoint: {path!r} has no key {key!r}; keys: {sorted(ckpt)[:12]}")
    if not isinstance(state, dict):
        raise ValueError(f"--checkpoint: expected a state dict in {path!r}, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        missing, unexpected = critic.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"--checkpoint: {path!r} does not fit the critic: {exc}") from exc
    if missing or unexpected:
        raise ValueError(
            f"--checkpoint: {path!r} does not fit the critic: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )


def move_batch(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return [move_batch(v, device) if isinstance(v, Tensor) else v for v in batch]
    if isinstance(batch, dict):
        return {k: move_batch(v, device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    raise TypeError(f"batches: expected a Tensor, tuple/list or dict per batch, got {type(batch).__name__}")
