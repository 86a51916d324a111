"""Construction-time swap: ``Discriminator(D_param='SAN')`` builds SAN layers where it built SN ones.

BigGAN's (and BigGAN-deep's) ``Discriminator.__init__`` makes ``functools.partial(layers.SNConv2d, ...)``
(and ``SNLinear``/``SNEmbedding``) when ``D_param == 'SN'``, builds the network with them and creates
``self.optim`` over the result. :func:`install` wraps that ``__init__``: with ``D_param='SAN'`` it runs
the original with ``D_param='SN'`` while the name ``layers`` in the module that defines it resolves to a
view whose SN classes are the SAN ones, then sets ``D_param='SAN'``, builds :class:`BigGANSAN` (``D.san``)
and attaches it to ``D.optim``. The generator, built with the real ``layers``, keeps its SN.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from .errors import SANBigGANError
from .layers import SAN_CLASSES, SAN_LAYER_TYPES, SN_CLASS_NAMES, is_ajbrock_sn, layer_kind, san_layer_from
from .normalizer import BigGANSAN
from .options import SANOptions
from .patch import default_example_input, restore_modules

_MARK = "__san_biggan_original__"


@dataclass
class ConstructionPatch:
    """An installed wrapper of ``cls.__init__``; :meth:`remove` restores the original function."""

    cls: type
    original_init: Callable[..., None]
    options: SANOptions
    verbose: bool = True

    @property
    def installed(self) -> bool:
        return getattr(self.cls.__dict__.get("__init__"), _MARK, None) is self.original_init

    def remove(self) -> None:
        if self.installed:
            self.cls.__init__ = self.original_init  # type: ignore[misc]


def check_model_module(model_module: types.ModuleType) -> tuple[type, types.ModuleType]:
    """``(Discriminator class, its layers module)``, or :class:`SANBigGANError` saying what is missing."""
    name = getattr(model_module, "__name__", repr(model_module))
    cls = getattr(model_module, "Discriminator", None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise SANBigGANError(f"model module {name!r}: expected a Discriminator nn.Module class, got {cls!r}")
    init = cls.__dict__.get("__init__")
    if getattr(init, _MARK, None) is not None:
        raise SANBigGANError(f"model module {name!r}: Discriminator is already patched for SAN")
    layers = getattr(init, "__globals__", {}).get("layers")
    missing = [c for c in SN_CLASS_NAMES.values() if not isinstance(getattr(layers, c, None), type)]
    if not isinstance(layers, types.ModuleType) or missing:
        raise SANBigGANError(
            f"model module {name!r}: expected Discriminator.__init__ to see a 'layers' module with "
            f"SNConv2d/SNLinear/SNEmbedding (BigGAN-PyTorch layout), got {layers!r} missing {missing}"
        )
    assert init is not None  # it has the __globals__ that gave `layers`, a module (checked above)
    if "D_param" not in inspect.signature(init).parameters:
        raise SANBigGANError(f"model module {name!r}: expected Discriminator.__init__ to take D_param, it does not")
    return cls, layers


@contextmanager
def _layers_view(namespace: dict[str, Any], kinds: tuple[str, ...]) -> Iterator[None]:
    real = namespace["layers"]
    view = types.ModuleType(real.__name__, real.__doc__)
    view.__dict__.update(real.__dict__)
    for kind in kinds:
        setattr(view, SN_CLASS_NAMES[kind], SAN_CLASSES[kind])
    namespace["layers"] = view
    try:
        yield
    finally:
        namespace["layers"] = real


def install(
    model_module: types.ModuleType, options: Optional[SANOptions] = None, *, verbose: bool = True
) -> ConstructionPatch:
    """Make ``model_module.Discriminator(..., D_param='SAN')`` build a SAN D (other ``D_param``: unchanged)."""
    options = (options or SANOptions()).validate()
    cls, _ = check_model_module(model_module)
    original = cls.__dict__["__init__"]
    signature = inspect.signature(original)
    default = signature.parameters["D_param"].default
    record = ConstructionPatch(cls, original, options, verbose)

    @functools.wraps(original)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        if bound.arguments.get("D_param", default) != "SAN":
            original(self, *args, **kwargs)
            return
        bound.arguments["D_param"] = "SN"
        with _layers_view(original.__globals__, record.options.layers):
            original(*bound.args, **bound.kwargs)
        self.D_param = "SAN"  # type: ignore[assignment]  # upstream D's str attribute (Module.__setattr__ stub)
        _finish(self, record)

    setattr(__init__, _MARK, original)
    cls.__init__ = __init__  # type: ignore[misc]
    return record


def _finish(D: nn.Module, record: ConstructionPatch) -> None:
    """After the original ``__init__``: convert stragglers, build ``D.san``, attach it to ``D.optim``."""
    kinds = record.options.layers
    named = dict(D.named_modules())
    stragglers = {n: san_layer_from(m) for n, m in named.items() if is_ajbrock_sn(m) and layer_kind(m) in kinds}
    restore_modules(D, stragglers)  # SN layers built without going through `layers.SN*` (same Parameters)
    names = [n for n, m in D.named_modules() if isinstance(m, SAN_LAYER_TYPES)]
    if not names:
        raise SANBigGANError(
            f"{record.cls.__qualname__}(D_param='SAN'): nothing to patch: __init__ built no "
            f"{'/'.join(SN_CLASS_NAMES[k] for k in kinds)} layers"
        )
    optim = D.__dict__.get("optim")
    if not isinstance(optim, torch.optim.Optimizer):
        raise SANBigGANError(f"{record.cls.__qualname__}: expected __init__ to create D.optim, got {optim!r}")
    san = BigGANSAN(D, names, record.options, example_input=default_example_input(D))
    D.san = san  # type: ignore[assignment]  # plain attribute of the upstream D; Module.__setattr__ stub: Tensor/Module
    san.attach(optim)
    if record.verbose:
        print(san.report(), flush=True)
