"""The documented compat step for the pinned MMagic stack; run it before torchvision or mmagic is imported.

Each fix checks whether it is needed and does nothing otherwise, so :func:`apply` is safe on any stack
(``import san_mmagic`` and ``python -m san_mmagic.train`` call it first):

1. NumPy 2 removed ``np.bool8`` and friends (:func:`san_compat.ensure_numpy_aliases`).
2. PyPI's torchvision beside a CPU/local torch fails at import on ``torchvision::nms``
   (:func:`san_compat.ensure_torchvision_importable`).
3. ``mmcv-lite`` ships ``mmcv/ops/*.py`` but not the compiled ``mmcv._ext`` they load at import, and
   mmagic imports ``mmcv.ops`` unconditionally. :func:`stub_mmcv_ext` installs a ``mmcv._ext`` whose
   functions raise a clear error *when called*; its ``__spec__`` has no loader, so MMEngine's
   ``mmcv_full_available()`` stays False and nothing takes the stub for real ops. SNGAN, BigGAN,
   SRGAN/ESRGAN never call those ops.
4. torch >= 2.6 loads checkpoints with ``weights_only=True``; MMEngine's training checkpoints pickle
   its ``HistoryBuffer`` (the MessageHub's logs: NumPy arrays, and its statistic methods as
   ``getattr(HistoryBuffer, 'mean')``), so ``resume``/``load_from`` fail. :func:`allow_mmengine_checkpoints`
   extends torch's allow-list (``torch.serialization.add_safe_globals``) with ``HistoryBuffer``, the
   NumPy array/dtype/scalar reconstructors, and, for the pickle's ``builtins.getattr``, a restricted
   stand-in that returns only HistoryBuffer's statistic methods. We chose this over
   ``weights_only=False``: loading stays restricted (a downloaded ``.pth`` still cannot run code).
   A checkpoint holding other objects (e.g. custom classes in ``dataset_meta``) fails with torch's
   message naming the class; allow it with ``torch.serialization.add_safe_globals([...])``, or, for a
   file you trust, set torch's ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.

Not part of :func:`apply` (it changes the run's config): :func:`allow_cpu_distributed`, for a distributed
launch on a machine without CUDA (``python -m san_mmagic.train`` calls it when ``--launcher`` is not ``none``).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import pickle
import sys
import types
from typing import Any, Callable

from san_compat import ensure_numpy_aliases, ensure_torchvision_importable

__all__ = [
    "MissingMMCVOp",
    "allow_cpu_distributed",
    "allow_mmengine_checkpoints",
    "apply",
    "history_buffer_getattr",
    "stub_mmcv_ext",
]


class MissingMMCVOp(RuntimeError):
    """Raised when code calls a compiled mmcv op that mmcv-lite does not have."""


class _MissingExt(types.ModuleType):
    """Stand-in for ``mmcv._ext``: every attribute is a function that raises :class:`MissingMMCVOp`."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args: Any, **kwargs: Any) -> Any:
            raise MissingMMCVOp(
                f"mmcv op {name!r} needs mmcv's compiled extension, which mmcv-lite does not ship; "
                "install the full mmcv build matching your torch/CUDA to use it"
            )

        missing.__name__ = name
        return missing


def stub_mmcv_ext() -> bool:
    """Install the ``mmcv._ext`` stand-in when mmcv is installed without compiled ops; True if installed."""
    if isinstance(sys.modules.get("mmcv._ext"), _MissingExt):
        return False
    if importlib.util.find_spec("mmcv") is None:
        return False
    try:
        if importlib.util.find_spec("mmcv._ext") is not None:
            return False  # the full mmcv build
    except (ImportError, ValueError):
        pass
    stub = _MissingExt("mmcv._ext", "stand-in for mmcv's compiled ops (installed by san_mmagic.compat)")
    stub.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)  # no loader: mmcv_full_available() is False
    sys.modules["mmcv._ext"] = stub
    return True


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` in weights-only loads: only ``HistoryBuffer``'s statistic methods."""
    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and isinstance(name, str) and name in HistoryBuffer._statistics_methods:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f"weights-only load: getattr({obj!r}, {name!r}) is not allowed (san_mmagic allows only HistoryBuffer's "
        "statistic methods)"
    )


def _mmengine_checkpoint_globals() -> list[Any]:
    import numpy as np
    from mmengine.logging import HistoryBuffer

    HistoryBuffer()  # registers the built-in statistic methods (min/max/current/mean) on the class

    core = getattr(np, "_core", None) or np.core  # NumPy 2 / NumPy 1
    found: list[Any] = [HistoryBuffer, np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    found.append((history_buffer_getattr, "builtins.getattr"))
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25: one class per dtype (Float64DType...)
    if dtypes is not None:
        found += [c for c in vars(dtypes).values() if isinstance(c, type) and issubclass(c, np.dtype)]
    return found


def allow_mmengine_checkpoints() -> bool:
    """Allow MMEngine's ``HistoryBuffer`` (and the NumPy pieces it pickles) under ``weights_only=True``.

    Returns True if anything was added; does nothing on torch < 2.6 (``weights_only=False`` was the
    default there) or without MMEngine.
    """
    import torch

    major, minor = (int("".join(c for c in part if c.isdigit()) or 0) for part in torch.__version__.split(".")[:2])
    add = getattr(torch.serialization, "add_safe_globals", None)
    get = getattr(torch.serialization, "get_safe_globals", None)
    if (major, minor) < (2, 6) or add is None or get is None or importlib.util.find_spec("mmengine") is None:
        return False
    current = {id(g[0]) if isinstance(g, tuple) else id(g) for g in get()}
    missing = [g for g in _mmengine_checkpoint_globals() if id(g[0] if isinstance(g, tuple) else g) not in current]
    if missing:
        add(missing)
    return bool(missing)


def apply() -> dict[str, bool]:
    """Run every fix in order (before torchvision/mmagic are imported); returns ``{fix: applied}``."""
    return {
        "numpy_aliases": ensure_numpy_aliases(),
        "torchvision": ensure_torchvision_importable(),
        "mmcv_ext_stub": stub_mmcv_ext(),
        "mmengine_checkpoints": allow_mmengine_checkpoints(),
    }


def allow_cpu_distributed(cfg: Any) -> bool:
    """Let ``--launcher pytorch`` run on CPUs (gloo); does nothing when CUDA is available. True if applied.

    MMEngine's ``init_dist`` calls ``torch.cuda.set_device(LOCAL_RANK)`` and its model wrappers pass
    ``device_ids=[LOCAL_RANK]`` to DDP, both CUDA-only. Without CUDA: ``torch.cuda.set_device`` becomes a
    no-op, the config's ``env_cfg.dist_cfg.backend`` becomes ``'gloo'`` and ``model_wrapper_cfg.device_ids``
    ``None`` (DDP's CPU form).
    """
    import torch

    if torch.cuda.is_available():
        return False
    torch.cuda.set_device = lambda device: None
    env_cfg = cfg.setdefault("env_cfg", {})
    env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
    wrapper = cfg.get("model_wrapper_cfg")
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", broadcast_buffers=False, device_ids=None)
    else:
        wrapper["device_ids"] = None
    return True
