"""Shared, opt-in import fixes for the adapters' host frameworks; each does nothing where not needed.

Call them before the host framework (or torchvision) is imported:

- :func:`ensure_torchvision_importable`: PyPI's torchvision wheels next to a CPU-only/local torch build
  fail at import with ``operator torchvision::nms does not exist`` (its compiled ``_C`` cannot load, yet
  ``torchvision._meta_registrations`` registers fake kernels for ``nms``/``qnms`` unconditionally).
  Defining those two op schemas lets torchvision import; models, transforms and datasets work, the
  compiled detection ops (``nms``, ``roi_align``…) stay unavailable, as they already were.
- :func:`ensure_numpy_aliases`: NumPy 2 removed ``np.bool8`` (and friends) that older frameworks use.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

_torchvision_lib: Any = None


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work when its compiled ops cannot load; returns True if a fix was applied."""
    global _torchvision_lib
    if "torchvision" in sys.modules or _torchvision_lib is not None:
        return False
    if importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    if hasattr(torch.ops, "torchvision") and _has_op(torch.ops.torchvision, "nms"):
        return False
    try:
        import torchvision

        return False
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    _torchvision_lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        if not _has_op(torch.ops.torchvision, op):
            _torchvision_lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401

    return True


def _has_op(namespace: Any, name: str) -> bool:
    try:
        getattr(namespace, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def ensure_numpy_aliases() -> bool:
    """Restore ``np.bool8``/``np.int0``/``np.float_``... aliases removed in NumPy 2; returns True if any were added."""
    try:
        import numpy as np
    except ImportError:
        return False
    aliases = {"bool8": "bool_", "int0": "intp", "uint0": "uintp", "float_": "float64", "complex_": "complex128"}
    added = False
    for old, new in aliases.items():
        if old not in np.__dict__:
            setattr(np, old, getattr(np, new))
            added = True
    return added
