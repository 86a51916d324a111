"""Installing SAN into a StudioGAN checkout's modules at run time (the user's checkout is never edited).

:func:`install` wraps these StudioGAN functions; :func:`uninstall` puts the originals back:

- ``Configurations.load_base_cfgs``: also defines ``MODEL.apply_d_san`` and ``MODEL.d_san_*``
  (:data:`~san_studiogan.options.DEFAULTS`), so StudioGAN's strict YAML loader accepts them.
- ``Configurations._overwrite_cfgs``: first rejects unknown/misplaced SAN keys with one clear error.
- ``Configurations.define_modules``: checks the SAN options (and SN / weight clipping / StyleGAN
  conflicts) before anything changes, then swaps ``MODULES.d_conv2d``/``d_deconv2d``/``d_linear``/
  ``d_embedding`` for :mod:`san_studiogan.builders` and stores the options as ``MODULES.d_san``.
- ``models.model.load_generator_discriminator``: builds D with ``apply_d_sn=True`` (SN's
  architecture: no BatchNorm in D) while ``cfgs.MODEL.apply_d_sn`` itself stays ``False``.
- ``Configurations.define_optimizer``: builds :func:`san_core.apply_san` on D and attaches it to
  ``OPTIMIZATION.d_optimizer`` (normalization after every real D step, R1's extra step included,
  GradScaler-skipped steps excluded); the object is kept as ``cfgs.OPTIMIZATION.d_san``.
- ``utils.misc.save_model`` / ``utils.ckpt.load_ckpt``: SAN's state travels in D's checkpoint
  and is restored on resume, SN checkpoints load into a SAN D (:mod:`san_studiogan.checkpoint`).
- ``worker.WORKER.log_train_statistics`` (once ``loader`` imported it): SAN's per-layer constants go
  to StudioGAN's logger and wandb (:mod:`san_studiogan.worker_log`).

``MODULES.d_san`` is pickled with ``cfgs`` into StudioGAN's spawned DDP workers; unpickling it
calls :func:`restore_options`, which re-applies :func:`install` in that worker.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import sys
from types import ModuleType
from typing import Any, Callable, Optional

import torch
from torch import nn

from san_core import SAN, apply_san, unwrap_model

from . import checkpoint
from .builders import d_builders
from .host import host_entry, sibling_module
from .options import DEFAULTS, SANOptions, check_yaml_keys, parse_options
from .worker_log import wrap_log_train_statistics

_MARK = "__san_studiogan_original__"
#: ``(owner, attribute, original, owner had it in its own __dict__)`` for every installed wrapper.
_PATCHES: list[tuple[Any, str, Any, bool]] = []
_CONFIG_METHODS = ("load_base_cfgs", "_overwrite_cfgs", "define_modules", "define_optimizer")
#: ``Configurations`` class -> ``(config, model, sys.path entry, ckpt or None, misc or None)`` module names.
_HOSTS: dict[type, tuple[str, str, str, Optional[str], Optional[str]]] = {}


def _check_host(
    config_module: ModuleType,
    model_module: ModuleType,
    ckpt_module: Optional[ModuleType],
    misc_module: Optional[ModuleType],
) -> type:
    cls = getattr(config_module, "Configurations", None)
    missing = [m for m in _CONFIG_METHODS if not callable(getattr(cls, m, None))] if cls else ["Configurations"]
    if missing:
        raise TypeError(
            f"san_studiogan.install: expected StudioGAN's src/config.py, got module {config_module.__name__!r} "
            f"({getattr(config_module, '__file__', None)}) without {', '.join(missing)}"
        )
    if not callable(getattr(model_module, "load_generator_discriminator", None)):
        raise TypeError(
            f"san_studiogan.install: expected StudioGAN's src/models/model.py, got module {model_module.__name__!r} "
            f"({getattr(model_module, '__file__', None)}) without load_generator_discriminator"
        )
    needs = ((ckpt_module, "utils/ckpt.py", "load_ckpt"), (misc_module, "utils/misc.py", "save_model"))
    for module, name, function in needs:
        if module is not None and not callable(getattr(module, function, None)):
            raise TypeError(
                f"san_studiogan.install: expected StudioGAN's src/{name}, got module {module.__name__!r} "
                f"({getattr(module, '__file__', None)}) without {function}"
            )
    assert cls is not None  # a missing Configurations raised above
    return cls


def install(
    config_module: Optional[ModuleType] = None,
    model_module: Optional[ModuleType] = None,
    ckpt_module: Optional[ModuleType] = None,
    misc_module: Optional[ModuleType] = None,
) -> bool:
    """Patch StudioGAN's ``config``, ``models.model``, ``utils.ckpt`` and ``utils.misc`` modules.

    ``config``/``models.model`` are imported by name when not given; ``utils.ckpt``/``utils.misc``
    are taken from beside ``config`` when not given (checkpoints are left alone in a host without
    them). Idempotent; returns ``True`` when it patched anything. Raises ``ImportError`` when
    StudioGAN's ``src/`` is not importable, ``TypeError`` for other modules (before any change).
    """
    if config_module is None or model_module is None:
        try:
            config_module = config_module or importlib.import_module("config")
            model_module = model_module or importlib.import_module("models.model")
        except ImportError as err:
            raise ImportError(
                f"san_studiogan: StudioGAN is not importable ({err}); put PyTorch-StudioGAN/src on sys.path, or run "
                "python -m san_studiogan --studiogan-root PATH -- <src/main.py arguments>"
            ) from err
    ckpt_module = ckpt_module or sibling_module(config_module, "utils.ckpt")
    misc_module = misc_module or sibling_module(config_module, "utils.misc")
    cls = _check_host(config_module, model_module, ckpt_module, misc_module)
    old = _HOSTS.get(cls, (None,) * 5)
    names = (getattr(ckpt_module, "__name__", None) or old[3], getattr(misc_module, "__name__", None) or old[4])
    _HOSTS[cls] = (config_module.__name__, model_module.__name__, host_entry(config_module), *names)
    wrappers: list[tuple[Any, str, Callable[[Any], Any]]] = [
        (cls, "load_base_cfgs", _wrap_load_base_cfgs),
        (cls, "_overwrite_cfgs", _wrap_overwrite_cfgs),
        (cls, "define_modules", functools.partial(_wrap_define_modules, cls=cls)),
        (cls, "define_optimizer", functools.partial(_wrap_define_optimizer, cls=cls)),
        (model_module, "load_generator_discriminator", _wrap_loader),
    ]
    if ckpt_module is not None:
        wrappers.append((ckpt_module, "load_ckpt", checkpoint.wrap_load_ckpt))
    if misc_module is not None:
        wrappers.append((misc_module, "save_model", checkpoint.wrap_save_model))
    patched = False
    for owner, name, wrap in wrappers:
        current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
        if not hasattr(current, _MARK):
            _replace(owner, name, wrap(getattr(owner, name)))
            patched = True
    return patched


def uninstall() -> list[str]:
    """Put every wrapped function back exactly (the original objects); returns their names."""
    names = []
    for owner, name, original, own in reversed(_PATCHES):
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)
        names.append(f"{getattr(owner, '__name__', owner)}.{name}")
    _PATCHES.clear()
    _HOSTS.clear()
    return names


def is_installed(config_module: ModuleType) -> bool:
    """Whether :func:`install` has patched this ``config`` module's ``Configurations``."""
    cls = getattr(config_module, "Configurations", None)
    return cls is not None and hasattr(cls.__dict__.get("define_modules"), _MARK)


def restore_options(fields: dict[str, Any]) -> SANOptions:
    """Unpickling hook of :class:`SANOptions`: re-install the patches in this process, then rebuild."""
    options = SANOptions(**fields)
    if options.host is not None:
        config_name, model_name, entry, ckpt_name, misc_name = options.host
        if entry not in sys.path:
            sys.path.append(entry)
        modules = [importlib.import_module(n) if n else None for n in (config_name, model_name, ckpt_name, misc_name)]
        install(*modules)
    return options


def _replace(owner: Any, name: str, wrapper: Any) -> None:
    original = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)
    setattr(wrapper, _MARK, original)
    _PATCHES.append((owner, name, original, name in owner.__dict__))
    setattr(owner, name, wrapper)


def _wrap_load_base_cfgs(original: Callable) -> Callable:
    @functools.wraps(original)
    def load_base_cfgs(self: Any) -> Any:
        result = original(self)
        for key, value in DEFAULTS.items():
            setattr(self.MODEL, key, value)
        return result

    return load_base_cfgs


def _wrap_overwrite_cfgs(original: Callable) -> Callable:
    @functools.wraps(original)
    def _overwrite_cfgs(self: Any, cfg_file: str) -> Any:
        import yaml  # StudioGAN's own dependency

        try:
            with open(cfg_file) as f:
                yaml_cfg = yaml.load(f, Loader=yaml.FullLoader)
        except (OSError, yaml.YAMLError):
            yaml_cfg = None  # StudioGAN's own loader reports it
        check_yaml_keys(yaml_cfg, str(cfg_file))
        return original(self, cfg_file)

    return _overwrite_cfgs


def _wrap_define_modules(original: Callable, cls: type) -> Callable:
    @functools.wraps(original)
    def define_modules(self: Any) -> Any:
        options = parse_options(self.MODEL, self.LOSS)  # every check before anything changes
        modules = original(self)
        self.MODULES.__dict__.pop("d_san", None)
        if options is not None:
            for slot, builder in d_builders(options.circular_padding).items():
                setattr(self.MODULES, slot, builder)
            self.MODULES.d_san = dataclasses.replace(options, host=_HOSTS.get(cls))
        return modules

    return define_modules


def _wrap_loader(original: Callable) -> Callable:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def load_generator_discriminator(*args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind_partial(*args, **kwargs).arguments
        MODEL, MODULES = arguments.get("MODEL"), arguments.get("MODULES")
        if getattr(MODULES, "d_san", None) is None:
            return original(*args, **kwargs)
        # MODEL: StudioGAN's config namespace, which StudioGAN always passes (mypy sees `.get`'s None).
        previous = MODEL.apply_d_sn  # type: ignore[union-attr]
        # D gets SN's architecture; its layers come from the SAN builders
        MODEL.apply_d_sn = True  # type: ignore[union-attr]
        try:
            return original(*args, **kwargs)
        finally:
            MODEL.apply_d_sn = previous  # type: ignore[union-attr]

    return load_generator_discriminator


def _install_worker_logging(cls: type) -> None:
    """Wrap StudioGAN's ``WORKER.log_train_statistics`` (the host's own ``worker`` module, if imported)."""
    entry = _HOSTS.get(cls, (None,) * 5)[2]
    worker = sys.modules.get("worker")
    if entry is None or worker is None or host_entry(worker) != entry:
        return
    WORKER = getattr(worker, "WORKER", None)
    current = WORKER.__dict__.get("log_train_statistics") if isinstance(WORKER, type) else None
    if callable(current) and not hasattr(current, _MARK):
        _replace(WORKER, "log_train_statistics", wrap_log_train_statistics(current, getattr(worker, "wandb", None)))


def _wrap_define_optimizer(original: Callable, cls: type) -> Callable:
    @functools.wraps(original)
    def define_optimizer(self: Any, Gen: nn.Module, Dis: nn.Module) -> Any:
        result = original(self, Gen, Dis)
        previous = self.OPTIMIZATION.__dict__.pop("d_san", None)
        if previous is not None:
            checkpoint.unregister(previous)
            previous.remove()
        options = getattr(self.MODULES, "d_san", None)
        if options is not None:
            self.OPTIMIZATION.d_san = attach_san(
                Dis,
                self.OPTIMIZATION.d_optimizer,
                options,
                image_shape=(self.DATA.img_channels, self.DATA.img_size, self.DATA.img_size),
                run_seed=getattr(self.RUN, "seed", None),
            )
            _install_worker_logging(cls)
        return result

    return define_optimizer


def attach_san(
    Dis: nn.Module,
    d_optimizer: torch.optim.Optimizer,
    options: SANOptions,
    *,
    image_shape: tuple[int, int, int],
    run_seed: Any = None,
) -> SAN:
    """SAN on StudioGAN's D, hooked to its optimizer; conv input sizes learned from one probe pass.

    The probe runs ``Dis(zeros(2, C, H, W), zeros(2, long))`` in eval mode under ``no_grad``, so
    every conv's map size is known (and checked) before training. With ``normalize_first`` the
    weights are divided once right away (not counted as a step).
    """
    inner = unwrap_model(Dis)
    device = next(inner.parameters()).device
    probe = (torch.zeros(2, *image_shape, device=device), torch.zeros(2, dtype=torch.long, device=device))
    san = apply_san(
        inner,
        options.targets,
        circular_padding=options.circular_padding,
        strip_spectral_norm=False,
        example_input=probe,
        **options.san_kwargs(run_seed),
    )
    try:
        san.attach(d_optimizer)
        if options.normalize_first:
            san.normalize_(force=True)
    except BaseException:
        san.remove()
        raise
    checkpoint.register(san, options)
    return san
