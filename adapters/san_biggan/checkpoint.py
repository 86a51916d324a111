"""SAN's state beside BigGAN's checkpoints: ``utils.save_weights`` / ``utils.load_weights`` also handle ``D_san``.

BigGAN-PyTorch saves ``G``, ``G_optim``, ``D``, ``D_optim``, ``state_dict`` (and ``G_ema``) as
``<weights_root>/<experiment_name>/<name>[_<name_suffix>].pth`` (suffixes ``copy<k>`` and ``best<k>`` for
the extra copies). SAN's own state is in none of them: the count of D steps (``W ← W/‖W‖₀,∞`` happens on
every ``interval``-th one), the generator drawing the random ``⌈m·n·r⌉`` kernel subsets (``r < 1``), power
vectors and conv input sizes. A resumed run would restart the count and redraw the subsets, and so
diverge from an uninterrupted one. :func:`install` wraps the two functions of the checkout's ``utils``
module (the checkout itself is not edited):

- ``save_weights`` also writes ``D_san[_<name_suffix>].pth`` in the same folder when ``D`` has SAN;
- ``load_weights`` reads it back (checked before anything is loaded), loads BigGAN's files with D's
  weights taken as saved, then restores SAN's state: the run continues bit-for-bit. Without the file
  (a checkpoint of an SN run, or one saved without san_biggan) it warns, normalizes the loaded ``W`` once
  and goes on with the count and generator D has (a fresh D's: 0 and its seed).

The command line wins over the saved SAN settings (BigGAN's own rule for ``config``); a difference is printed.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import types
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from san_core import unwrap_model

from .errors import SANBigGANError
from .normalizer import BigGANSAN

#: File name stem of SAN's state, beside BigGAN's ``D``/``D_optim`` files.
SAN_STATE_NAME = "D_san"
FORMAT = "san_biggan.D_san/1"
_MARK = "__san_biggan_original__"
_PARAMETERS = ("G", "D", "state_dict", "weights_root", "experiment_name", "name_suffix")


def san_state_file(weights_root: str, experiment_name: str, name_suffix: Optional[str] = None) -> str:
    """``<weights_root>/<experiment_name>/D_san[_<name_suffix>].pth`` (BigGAN's naming of its own files)."""
    stem = "_".join(part for part in (SAN_STATE_NAME, name_suffix) if part)
    return f"{weights_root}/{experiment_name}/{stem}.pth"


def san_of(D: Optional[nn.Module]) -> Optional[BigGANSAN]:
    """``D.san`` when ``D`` (possibly wrapped in ``DataParallel``) is a SAN discriminator, else ``None``."""
    san = unwrap_model(D).__dict__.get("san") if isinstance(D, nn.Module) else None
    return san if isinstance(san, BigGANSAN) else None


def save_san_state(san: BigGANSAN, path: str) -> None:
    """Write ``san``'s state to ``path`` (through a temporary file, so a killed save leaves no half file)."""
    payload = {"format": FORMAT, "options": asdict(san.options), "san": san.state_dict()}
    temporary = f"{path}.tmp"
    torch.save(payload, temporary)
    os.replace(temporary, path)


def read_san_state(san: BigGANSAN, path: str) -> Optional[dict[str, Any]]:
    """SAN's state saved at ``path`` (``None`` if there is no file), checked against ``san``; changes nothing."""
    if not os.path.isfile(path):
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SANBigGANError(f"{path}: expected SAN state of format {FORMAT!r}, got {got!r}")
    state = payload.get("san")
    if not isinstance(state, dict) or not {"layers", "config", "calls", "generator"} <= set(state):
        raise SANBigGANError(f"{path}: expected SAN state with layers, config, calls and generator, got {state!r}")
    if list(state["layers"]) != list(san.layers):
        raise SANBigGANError(
            f"{path}: expected SAN state of D's SAN layers {list(san.layers)}, got {list(state['layers'])} "
            "(was the checkpoint saved with other --san_layers or another D?)"
        )
    return state


def restore_san_state(san: BigGANSAN, state: dict[str, Any], path: str) -> None:
    """Load ``state`` into ``san`` keeping the current settings (the command line's); print what differs."""
    current = dict(san.san.config)
    changed = {k: (v, current.get(k)) for k, v in state["config"].items() if current.get(k) != v}
    try:
        san.load_state_dict({**state, "config": current})
    except (ValueError, KeyError) as err:
        raise SANBigGANError(f"{path}: cannot restore SAN state: {err}") from None
    note = f"; settings differ from the checkpoint's, using the current ones: {changed}" if changed else ""
    print(f"san_biggan: restored SAN state from {path} (D step {san.san.calls}){note}", flush=True)


@contextlib.contextmanager
def _config_objects_loadable(utils: types.ModuleType) -> Iterator[None]:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read BigGAN's ``state_dict`` file.

    ``train.run`` saves its ``config`` in it, holding ``utils.activation_dict``'s activation modules; only
    those classes (``torch.nn`` ones) are allowed in addition to the plain types.
    """
    classes = {type(v) for v in getattr(utils, "activation_dict", {}).values() if isinstance(v, nn.Module)}
    allowed = sorted((c for c in classes if c.__module__.startswith("torch.nn.")), key=lambda c: c.__name__)
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    with safe_globals(allowed) if safe_globals is not None and allowed else contextlib.nullcontext():
        yield


@dataclass
class CheckpointHooks:
    """The wrapped ``utils.save_weights``/``load_weights``; :meth:`remove` puts the originals back."""

    utils: types.ModuleType
    original_save: Callable[..., Any]
    original_load: Callable[..., Any]

    @property
    def installed(self) -> bool:
        return all(
            getattr(getattr(self.utils, name, None), _MARK, None) is original
            for name, original in (("save_weights", self.original_save), ("load_weights", self.original_load))
        )

    def remove(self) -> None:
        for name, original in (("save_weights", self.original_save), ("load_weights", self.original_load)):
            if getattr(getattr(self.utils, name, None), _MARK, None) is original:
                setattr(self.utils, name, original)


def _check(utils: types.ModuleType, name: str) -> tuple[Callable[..., Any], inspect.Signature]:
    function = getattr(utils, name, None)
    if not callable(function):
        raise SANBigGANError(f"BigGAN's utils: expected a function {name}, got {function!r}")
    if getattr(function, _MARK, None) is not None:
        raise SANBigGANError(f"BigGAN's utils.{name} already saves/loads SAN state (installed twice)")
    signature = inspect.signature(function)
    missing = [p for p in _PARAMETERS if p not in signature.parameters]
    if missing:
        raise SANBigGANError(
            f"BigGAN's utils.{name}: expected parameters {', '.join(_PARAMETERS)}, got {signature} (missing {missing})"
        )
    return function, signature


def install(utils: types.ModuleType) -> CheckpointHooks:
    """Wrap ``utils.save_weights``/``utils.load_weights`` so they also save/restore ``D.san``'s state."""
    save, save_signature = _check(utils, "save_weights")
    load, load_signature = _check(utils, "load_weights")

    def arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    @functools.wraps(save)
    def save_weights(*args: Any, **kwargs: Any) -> Any:
        given = arguments(save_signature, args, kwargs)
        result = save(*args, **kwargs)
        san = san_of(given["D"])
        if san is not None:
            path = san_state_file(given["weights_root"], given["experiment_name"], given["name_suffix"])
            save_san_state(san, path)
            print(f"san_biggan: saved SAN state (D step {san.san.calls}) to {path}", flush=True)
        return result

    @functools.wraps(load)
    def load_weights(*args: Any, **kwargs: Any) -> Any:
        given = arguments(load_signature, args, kwargs)
        san = san_of(given["D"])
        if san is None:
            with _config_objects_loadable(utils):
                return load(*args, **kwargs)
        path = san_state_file(given["weights_root"], given["experiment_name"], given["name_suffix"])
        state = read_san_state(san, path)  # bad state: raise before anything is loaded
        with san.restoring(), _config_objects_loadable(utils):
            result = load(*args, **kwargs)
        if state is not None:
            restore_san_state(san, state, path)
            return result
        warnings.warn(
            f"san_biggan: no SAN state at {path} (a checkpoint of an SN run, or saved without san_biggan): "
            "D's loaded weights are normalized once; SAN's step count and kernel-subset generator are not "
            "restored (a freshly built D starts them at 0 and at its seed)",
            stacklevel=2,
        )
        san.normalize_loaded()
        return result

    setattr(save_weights, _MARK, save)
    setattr(load_weights, _MARK, load)
    for name, wrapper in (("save_weights", save_weights), ("load_weights", load_weights)):
        setattr(utils, name, wrapper)
    return CheckpointHooks(utils, save, load)
