"""Finding and importing a PyTorch-StudioGAN checkout (its ``src/`` is a flat import root)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

ENV_ROOT = "SAN_STUDIOGAN_ROOT"


def studiogan_src(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """``<root>/src`` of a StudioGAN checkout (``root`` defaults to ``$SAN_STUDIOGAN_ROOT``).

    Raises ``FileNotFoundError`` saying what was expected when it is not one.
    """
    if root is None:
        root = os.environ.get(ENV_ROOT)
        if not root:
            raise FileNotFoundError(f"no StudioGAN checkout: pass --studiogan-root or set {ENV_ROOT}")
    src = Path(root).expanduser().resolve() / "src"
    missing = [name for name in ("main.py", "config.py", "loader.py", "models/model.py") if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"expected a POSTECH-CVLab/PyTorch-StudioGAN checkout at {Path(root)} "
            f"(with src/main.py, src/config.py, src/loader.py, src/models/model.py); missing {', '.join(missing)}"
        )
    return src


def import_studiogan(root: Optional[Union[str, os.PathLike]] = None) -> tuple[ModuleType, ModuleType]:
    """Put ``<root>/src`` first on ``sys.path`` and import StudioGAN's ``config`` and ``models.model``.

    Raises ``ImportError`` when other modules named ``config``/``models`` are already imported
    (StudioGAN's module names are generic: import it in a process of its own).
    """
    src = studiogan_src(root)
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    modules = (importlib.import_module("config"), importlib.import_module("models.model"))
    for module in modules:
        _check_origin(module, src)
    return modules


def _check_origin(module: ModuleType, root: Path) -> None:
    """``ImportError`` unless ``module`` was imported from a file under ``root`` (not a same-named package)."""
    where = Path(module.__file__ or "").resolve()
    if root not in where.parents:
        raise ImportError(
            f"san_studiogan: module {module.__name__!r} comes from {where}, expected it under {root}; "
            "another package with that name was imported first"
        )


def host_entry(module: ModuleType) -> str:
    """The ``sys.path`` entry from which ``module`` (possibly dotted) was imported."""
    path = Path(module.__file__ or "").resolve().parent
    for _ in range(module.__name__.count(".")):
        path = path.parent
    return str(path)


def sibling_module(config_module: ModuleType, name: str) -> Optional[ModuleType]:
    """StudioGAN's module ``name`` (``"utils.ckpt"``) beside ``config_module``; ``None`` when the host has no such file.

    Raises ``ImportError`` when the file is there but does not import, or another module of that
    name (from elsewhere) was imported first.
    """
    entry = Path(host_entry(config_module))
    if not (entry / (name.replace(".", "/") + ".py")).is_file():
        return None
    module = importlib.import_module(name)
    _check_origin(module, entry)
    return module
