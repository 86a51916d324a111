"""Wire SAN into BasicSR's training without changing its code: :func:`install` and :func:`attach_to_model`.

:func:`install` (the launchers call it) wraps three names of ``basicsr.train`` (and ``basicsr.models.build_model``):

- ``parse_options``: after BasicSR parses the YAML, expands ``${VAR}`` paths and checks local files
  (:mod:`san_basicsr.paths`) and checks ``network_d.san`` (:mod:`san_basicsr.options`), so a bad option
  or a missing file stops before anything is built, with one line.
- ``build_model``: every model it builds goes through :func:`attach_to_model`.
- ``load_resume_state``: BasicSR maps resume states to ``torch.cuda.current_device()``; with
  ``num_gpu: 0`` or without CUDA they are loaded on the CPU instead (same path rules, same
  ``check_resume``). With CUDA the original runs unchanged.

:func:`attach_to_model` works on any model with ``net_d`` and ``optimizer_d`` (``SRGANModel``,
``ESRGANModel``, Real-ESRGAN's ``RealESRGANModel``, ...) whose ``net_d`` is a SAN arch: it restores SAN's
state (:mod:`san_basicsr.checkpoint`), attaches SAN to ``optimizer_d`` (once after every real
``step()``; BasicSR steps it once per iteration), writes SAN's state beside ``net_d`` whenever the model
saves, and makes ``get_current_log()`` (which BasicSR calls every ``logger.print_freq`` iterations for its
``MessageLogger``, text and TensorBoard) call ``SAN.check()`` (the sync-free path's delayed NaN/Inf error) and add
the ``san/<layer>`` constants. Models without ``net_d``
(``SRModel``, Real-ESRGAN's ``RealESRNetModel``) and non-SAN ``net_d`` are left alone (logged).
"""

from __future__ import annotations

import dataclasses
import logging
import os.path as osp
from typing import Any, Callable, Optional, cast

import torch

from san_core import SAN, unwrap_model

from .archs import SAN_ARCHS
from .checkpoint import restore_state, save_state
from .options import SANOptions, check_network_d
from .paths import resolve_paths

__all__ = ["SANBinding", "attach_to_model", "install", "is_installed", "uninstall"]

_ORIGINALS: dict[tuple[Any, str], Callable[..., Any]] = {}


@dataclasses.dataclass
class SANBinding:
    """What :func:`attach_to_model` set up on one model (``model.san_binding``)."""

    san: SAN
    handle: Any
    status: str

    def detach(self) -> None:
        self.handle.remove()


def _logger() -> logging.Logger:
    """BasicSR's logger, without initializing it (``get_root_logger()`` would, and BasicSR's log file would be lost)."""
    return logging.getLogger("basicsr")


def attach_to_model(model: Any) -> Optional[SANBinding]:
    """Attach the SAN of ``model.net_d`` (a SAN arch) to ``model.optimizer_d``; None when there is nothing to do."""
    net_d = getattr(model, "net_d", None)
    if net_d is None:
        _logger().info(f"san_basicsr: {type(model).__name__} has no net_d; SAN is not used")
        return None
    bare = unwrap_model(net_d)
    san = getattr(bare, "san", None)
    if not isinstance(san, SAN):
        _logger().info(f"san_basicsr: net_d is {type(bare).__name__}, not a SAN arch ({', '.join(SAN_ARCHS)}); off")
        return None
    optimizer = getattr(model, "optimizer_d", None)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(
            f"san_basicsr: {type(model).__name__} has a SAN net_d but no optimizer_d (got {type(optimizer).__name__});"
            " SAN runs after every optimizer_d.step()"
        )
    existing = getattr(model, "san_binding", None)
    if existing is not None:
        return existing
    arch = type(bare).__name__
    status = restore_state(san, model.opt, arch)
    binding = SANBinding(san=san, handle=san.attach(optimizer), status=status)
    model.san_binding = binding

    save = model.save

    def save_with_san(epoch: int, current_iter: int) -> None:
        save(epoch, current_iter)
        save_state(san, model.opt["path"]["models"], current_iter, arch)

    model.save = save_with_san
    options = cast(SANOptions, bare.san_options)  # a SAN arch's parsed san: block (archs._apply)
    get_log, log_constants = model.get_current_log, options.log_constants

    def get_current_log() -> dict:  # BasicSR calls it every logger.print_freq iterations
        san.check()  # the sync-free path's delayed NaN/Inf error (one host sync)
        log = dict(get_log())
        if log_constants and san.last_constants:
            values = torch.stack([c.detach().float().cpu() for c in san.last_constants.values()]).tolist()
            log.update({f"san/{name}": value for name, value in zip(san.last_constants, values)})
        return log

    model.get_current_log = get_current_log
    _logger().info(
        f"san_basicsr: SAN on {len(san.layers)} layers of net_d ({arch}): {', '.join(san.layers)}; "
        f"options {options.as_yaml()}; after every real optimizer_d.step(); {status}"
    )
    return binding


# ----------------------------------------------------------------------------------------- install
def _parse_options(root_path: str, is_train: bool = True) -> Any:
    opt, args = _ORIGINALS[("train", "parse_options")](root_path, is_train=is_train)
    resolve_paths(opt)
    check_network_d(opt, SAN_ARCHS)
    return opt, args


def _build_model(opt: dict) -> Any:
    model = _ORIGINALS[("models", "build_model")](opt)
    attach_to_model(model)
    return model


def _load_resume_state(opt: dict) -> Any:
    if torch.cuda.is_available() and opt.get("num_gpu") != 0:
        return _ORIGINALS[("train", "load_resume_state")](opt)
    from basicsr.utils import check_resume, scandir

    path = opt["path"].get("resume_state")
    if opt.get("auto_resume"):  # BasicSR's rule: the newest <iter>.state under ./experiments/<name>/training_states
        folder = osp.join("experiments", opt["name"], "training_states")
        states = list(scandir(folder, suffix="state", recursive=False, full_path=False)) if osp.isdir(folder) else []
        if states:
            path = opt["path"]["resume_state"] = osp.join(folder, f"{max(float(s[:-6]) for s in states):.0f}.state")
    if not path:
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    check_resume(opt, state["iter"])
    return state


def install() -> None:
    """Wrap ``basicsr.train``'s ``parse_options``/``build_model``/``load_resume_state`` (idempotent)."""
    import basicsr.models
    import basicsr.train

    if is_installed():
        return
    _ORIGINALS[("train", "parse_options")] = basicsr.train.parse_options
    _ORIGINALS[("train", "load_resume_state")] = basicsr.train.load_resume_state
    _ORIGINALS[("train", "build_model")] = basicsr.train.build_model
    _ORIGINALS[("models", "build_model")] = basicsr.models.build_model
    basicsr.train.parse_options = _parse_options
    basicsr.train.load_resume_state = _load_resume_state
    basicsr.train.build_model = basicsr.models.build_model = _build_model


def is_installed() -> bool:
    return bool(_ORIGINALS)


def uninstall() -> None:
    """Put BasicSR's originals back."""
    import basicsr.models
    import basicsr.train

    modules = {"train": basicsr.train, "models": basicsr.models}
    for (where, name), original in _ORIGINALS.items():
        setattr(modules[where], name, original)
    _ORIGINALS.clear()
