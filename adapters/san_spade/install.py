"""Wrapping SPADE's own functions so its unchanged ``train.py`` builds, steps, saves and resumes a SAN D.

- ``models.networks.define_D``: patch D right after SPADE builds it (:func:`patch_discriminator`).
- ``Pix2PixModel.initialize_networks``: on ``--continue_train``, report spectral-norm conversion and load
  ``<which_epoch>_net_D_san.pth`` (SAN state) when present.
- ``Pix2PixModel.create_optimizers``: attach SAN to ``optimizer_D`` (the master copy's: SPADE calls it
  on ``pix2pix_model_on_one_gpu``, the module inside its ``DataParallel`` wrapper).
- ``Pix2PixModel.save``: write ``<epoch>_net_D_san.pth`` beside SPADE's ``<epoch>_net_D.pth``.
- ``Pix2PixTrainer.run_generator_one_step``/``run_discriminator_one_step``: before the first one,
  learn D's input sizes from the batch, normalize once and print the patched-layers report.
- ``Pix2PixTrainer.get_latest_losses`` (``train.py`` calls it every ``--print_freq`` iterations, to print and
  plot the losses): first ``SAN.check()``, which raises the sync-free path's delayed NaN/Inf error there.
- ``BaseOptions.save_options``: write ``san_opt.txt``/``san_opt.json`` beside SPADE's ``opt.txt``.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .options import SanSpadeOptions, write_record
from .patch import patch_discriminator, session_for


def san_checkpoint_path(opt: Any, epoch: Any) -> Path:
    """``<checkpoints_dir>/<name>/<epoch>_net_D_san.pth``, beside SPADE's ``<epoch>_net_D.pth``."""
    return Path(opt.checkpoints_dir) / opt.name / f"{epoch}_net_D_san.pth"


@dataclass
class Installation:
    """The wrapped attributes; :meth:`uninstall` puts SPADE's originals back."""

    originals: list[tuple[Any, str, Any]] = field(default_factory=list)

    def wrap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        self.originals.append((owner, name, original))
        setattr(owner, name, functools.wraps(original)(make(original)))

    def uninstall(self) -> None:
        for owner, name, original in reversed(self.originals):
            setattr(owner, name, original)
        self.originals.clear()


def _say(message: str) -> None:
    print(f"san_spade: {message}", flush=True)


def install(
    modules: dict[str, types.ModuleType], options: SanSpadeOptions, record: dict[str, Any] | None = None
) -> Installation:
    """Wrap SPADE's functions (see the module doc); returns the :class:`Installation` to undo it."""
    networks = modules["models.networks"]
    model_cls = modules["models.pix2pix_model"].Pix2PixModel
    trainer_cls = modules["trainers.pix2pix_trainer"].Pix2PixTrainer
    options_cls = modules["options.base_options"].BaseOptions
    inst = Installation()

    def define_D(original: Callable) -> Callable:
        def wrapper(opt: Any) -> Any:
            net = original(opt)
            session = patch_discriminator(net, options)
            _say(f"patched {type(net).__name__}: SAN on {len(session.san.layers)} convs ({options.summary()})")
            return net

        return wrapper

    def initialize_networks(original: Callable) -> Callable:
        def wrapper(self: Any, opt: Any) -> Any:
            nets = original(self, opt)
            session = session_for(nets[1]) if nets[1] is not None else None
            if session is not None and getattr(opt, "continue_train", False):
                if session.converted_layers:
                    _say(
                        f"converted a spectral-norm D checkpoint for {len(session.converted_layers)} layers "
                        "(weight_orig -> weight, weight_u/weight_v dropped)"
                    )
                path = san_checkpoint_path(opt, opt.which_epoch)
                if path.is_file():
                    session.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                    _say(f"resumed SAN state from {path} ({session.san.calls} D steps so far)")
                else:
                    _say(f"no SAN state at {path}: SAN starts fresh (one normalization before the first step)")
            return nets

        return wrapper

    def create_optimizers(original: Callable) -> Callable:
        def wrapper(self: Any, opt: Any) -> Any:
            optimizer_G, optimizer_D = original(self, opt)
            session = session_for(self.netD) if getattr(self, "netD", None) is not None else None
            if session is not None:
                session.attach(optimizer_D)
                betas = optimizer_D.param_groups[0].get("betas")
                _say(f"SAN attached to optimizer_D ({type(optimizer_D).__name__}, betas={betas})")
            return optimizer_G, optimizer_D

        return wrapper

    def save(original: Callable) -> Callable:
        def wrapper(self: Any, epoch: Any) -> Any:
            out = original(self, epoch)
            session = session_for(self.netD) if getattr(self, "netD", None) is not None else None
            if session is not None:
                torch.save(session.state_dict(), san_checkpoint_path(self.opt, epoch))
            return out

        return wrapper

    def first_step(original: Callable) -> Callable:
        def wrapper(self: Any, data: Any) -> Any:
            netD = getattr(getattr(self, "pix2pix_model_on_one_gpu", None), "netD", None)
            session = session_for(netD) if netD is not None else None
            if session is not None and not session.started:
                print(session.start(tuple(data["image"].shape[-2:])), flush=True)
            return original(self, data)

        return wrapper

    def get_latest_losses(original: Callable) -> Callable:
        def wrapper(self: Any) -> Any:
            netD = getattr(getattr(self, "pix2pix_model_on_one_gpu", None), "netD", None)
            session = session_for(netD) if netD is not None else None
            if session is not None:
                session.san.check()  # one host sync, at SPADE's logging interval
            return original(self)

        return wrapper

    def save_options(original: Callable) -> Callable:
        def wrapper(self: Any, opt: Any) -> Any:
            out = original(self, opt)
            txt, _ = write_record(Path(opt.checkpoints_dir) / opt.name, options, dict(record or {}))
            _say(f"SAN options recorded in {txt} (and san_opt.json)")
            return out

        return wrapper

    try:
        inst.wrap(networks, "define_D", define_D)
        inst.wrap(model_cls, "initialize_networks", initialize_networks)
        inst.wrap(model_cls, "create_optimizers", create_optimizers)
        inst.wrap(model_cls, "save", save)
        inst.wrap(trainer_cls, "run_generator_one_step", first_step)
        inst.wrap(trainer_cls, "run_discriminator_one_step", first_step)
        inst.wrap(trainer_cls, "get_latest_losses", get_latest_losses)
        inst.wrap(options_cls, "save_options", save_options)
    except (AttributeError, KeyError) as err:
        inst.uninstall()
        from .errors import SanSpadeError

        raise SanSpadeError(f"this SPADE checkout lacks what the patch wraps: {err}") from None
    return inst
