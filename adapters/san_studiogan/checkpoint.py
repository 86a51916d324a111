"""SAN's state in StudioGAN's D checkpoints: saved by ``utils.misc.save_model``, restored by ``utils.ckpt.load_ckpt``.

Resuming (``-ckpt DIR`` / ``RUN.ckpt_dir``) reloads D's weights and optimizer, but :class:`san_core.SAN`
also carries state: its step counter (with ``d_san_interval`` N > 1 it normalizes on every N-th
step), the generator that draws the random kernel subsets (``d_san_filter_ratio`` r < 1), power
vectors and the conv input sizes. :func:`wrap_save_model` adds ``SAN.state_dict()`` as one extra
key, :data:`SAN_STATE_KEY`, to the D checkpoint (``model=D-{current,best}-weights-step=S.pth``);
StudioGAN's loader reads its keys by name, so it ignores the extra one, and a checkpoint stays
loadable without san_studiogan. :func:`wrap_load_ckpt` restores it on every DDP rank (each rank
calls ``load_StudioGAN_ckpts``; rank 0 alone saves). The D whose state it is is found by identity:
the saved ``state_dict`` holds the very weight tensors of a live SAN's layers.

A checkpoint without SAN state (e.g. from an ``apply_d_sn`` run) loads with a
:class:`SANCheckpointWarning`; SAN then starts afresh (and normalizes right away when
``d_san_normalize_first``). Its ``weight_orig`` keys are converted for the SAN D
(:mod:`san_studiogan.sn_checkpoint`). The SAN options of the YAML win over those in the checkpoint.
``-freezeD`` fine-tuning (``load_ckpt(..., is_freezeD=True)``) starts a new run at step 0 in
StudioGAN, so SAN starts afresh there as well.
"""

from __future__ import annotations

import functools
import inspect
import io
import os
import warnings
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Optional, cast

import torch
from torch import nn
from torch.nn.utils.parametrize import ParametrizationList

from san_core import SAN, unwrap_model

from .options import SANOptions
from .sn_checkpoint import convert_sn_checkpoint

#: The extra key of StudioGAN's D checkpoint dict that holds ``SAN.state_dict()``.
SAN_STATE_KEY = "san_state"
#: Every SAN built by :func:`san_studiogan.attach_san` in this process, with its options (weakly held).
_LIVE: weakref.WeakKeyDictionary[SAN, SANOptions] = weakref.WeakKeyDictionary()


class SANCheckpointWarning(UserWarning):
    """A D checkpoint loaded into a SAN D lacks SAN's state, or it could not be restored as saved."""


def register(san: SAN, options: SANOptions) -> None:
    """Make ``san`` findable by the checkpoint wrappers (done by :func:`san_studiogan.attach_san`)."""
    _LIVE[san] = options


def unregister(san: SAN) -> None:
    """Forget ``san`` (its D is re-built or SAN removed)."""
    _LIVE.pop(san, None)


def san_of_state_dict(state_dict: Any) -> Optional[SAN]:
    """The live SAN whose layers' weights are the tensors of ``state_dict`` (same storage), else ``None``."""
    if not isinstance(state_dict, Mapping):
        return None
    for san in reversed(list(_LIVE)):
        if san.layers and all(_same(state_dict.get(key), weight) for key, weight in _raw_weights(san)):
            return san
    return None


def _raw_weights(san: SAN) -> list[tuple[str, Any]]:
    """``(state-dict key, Parameter)`` of each SAN layer's trained weight (``W``, or the raw ``W`` of ``W / s``)."""
    out: list[tuple[str, torch.Tensor]] = []
    for name, layer in san.layers.items():
        if name in san.scales:  # form="reparametrize"
            parametrizations = cast(nn.ModuleDict, layer.parametrizations)  # torch.nn.utils.parametrize
            original = cast(ParametrizationList, parametrizations.weight).original
            out.append((f"{name}.parametrizations.weight.original", original))
        else:
            out.append((f"{name}.weight", cast(torch.Tensor, layer.weight)))
    return out


def san_of_model(model: Any) -> Optional[SAN]:
    """The live SAN normalizing ``model`` (DDP wrappers unwrapped), else ``None``."""
    if not isinstance(model, nn.Module):
        return None
    inner = unwrap_model(model)
    return next((san for san in reversed(list(_LIVE)) if san.module is inner), None)


def _same(tensor: Any, weight: Any) -> bool:
    return (
        isinstance(tensor, torch.Tensor)
        and isinstance(weight, torch.Tensor)
        and tensor.shape == weight.shape
        and tensor.device == weight.device
        and tensor.data_ptr() == weight.data_ptr()
    )


def wrap_save_model(original: Callable) -> Callable:
    """``save_model(model, when, step, ckpt_dir, states)`` that adds SAN's state to a SAN D's ``states``."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def save_model(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        states = bound.arguments.get("states")
        if isinstance(states, Mapping):
            san = san_of_state_dict(states.get("state_dict"))
            if san is not None:
                bound.arguments["states"] = {**states, SAN_STATE_KEY: san.state_dict()}
        return original(*bound.args, **bound.kwargs)

    return save_model


def wrap_load_ckpt(original: Callable) -> Callable:
    """``load_ckpt(model, optimizer, ckpt_path, load_model, ...)`` that also restores a SAN D's SAN state."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def load_ckpt(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        san = san_of_model(arguments.get("model")) if arguments.get("load_model") else None
        if san is None:
            return original(*args, **kwargs)
        path = arguments["ckpt_path"]
        ckpt = _read(path)
        notes: list[str] = []
        load_opt = bool(arguments.get("load_opt"))
        optimizer = arguments.get("optimizer") if load_opt else None
        converted = convert_sn_checkpoint(ckpt, arguments["model"], optimizer) if isinstance(ckpt, Mapping) else None
        if converted is not None:
            fixed, notes = converted
            notes.insert(0, "its spectral-norm weights (weight_orig) were converted to the SAN D's plain weights")
            arguments["load_opt"] = load_opt and "optimizer" in fixed
            buffer = io.BytesIO()
            torch.save(fixed, buffer)
            buffer.seek(0)
            arguments["ckpt_path"] = buffer
        result = original(*bound.args, **bound.kwargs)
        state = ckpt.get(SAN_STATE_KEY) if isinstance(ckpt, Mapping) else None
        restore_san_state(san, state, str(path), notes, new_run=bool(arguments.get("is_freezeD")))
        return result

    return load_ckpt


def _read(path: Any) -> Any:
    """``torch.load`` as StudioGAN does (onto the CPU); a file object is rewound for the real load."""
    if isinstance(path, (str, os.PathLike)):
        return torch.load(path, map_location="cpu")
    start = path.tell()
    ckpt = torch.load(path, map_location="cpu")
    path.seek(start)
    return ckpt


def restore_san_state(
    san: SAN, state: Any, source: str = "the checkpoint", notes: Optional[list[str]] = None, *, new_run: bool = False
) -> bool:
    """Load ``state`` (``SAN.state_dict()``) into ``san``, keeping ``san``'s own settings; ``True`` if restored.

    When ``state`` is missing or does not fit ``san`` (other layers, sizes, version), warns with
    :class:`SANCheckpointWarning` and leaves ``san`` as it is. ``new_run`` (StudioGAN's ``-freezeD``
    fine-tuning, which restarts at step 0) leaves it as it is without a warning. Either way, the
    loaded weights are normalized once when the options ask for ``normalize_first``. The seed is
    not compared: the restored generator state supersedes it (a resumed run may draw a new ``RUN.seed``).
    """
    notes = list(notes or [])
    options = _LIVE.get(san)
    problem = None
    if new_run:
        pass
    elif not isinstance(state, Mapping):
        problem = f"has no SAN state ({SAN_STATE_KEY!r}), e.g. it comes from an apply_d_sn run"
    else:
        config = state.get("config")
        saved = config if isinstance(config, Mapping) else {}
        differ = {k: (v, san.config[k]) for k, v in saved.items() if k != "seed" and san.config.get(k, v) != v}
        try:
            san.load_state_dict({**state, "config": dict(san.config)})
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            problem = f"has a SAN state that does not fit this D ({err})"
        else:
            if differ:
                changes = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in differ.items())
                notes.append(f"its SAN settings differ from this run's ({changes}); this run's are kept")
    if problem is not None:
        notes.append(
            "SAN starts afresh (step counter 0, kernel subsets from the seed): the resumed run is not the "
            "uninterrupted one"
        )
    afresh = new_run or problem is not None
    if afresh and options is not None and options.normalize_first:
        san.normalize_(force=True)
        if notes:
            notes.append("the loaded weights were normalized once (d_san_normalize_first)")
    if notes:  # always when there is a problem
        head = f"san_studiogan: {source}" + (f" {problem}" if problem else "")
        warnings.warn(f"{head}; {'; '.join(notes)}", SANCheckpointWarning, stacklevel=3)
    return not afresh
