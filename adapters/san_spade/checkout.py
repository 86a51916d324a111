"""Finding and importing a SPADE checkout, with the announced ``sync_batchnorm`` fallback.

SPADE imports ``models.networks.sync_batchnorm`` (``SynchronizedBatchNorm2d``, ``DataParallelWithCallback``),
which its repository does not contain: users copy it from vacancy/Synchronized-BatchNorm-PyTorch. When it
is missing, :func:`install_sync_batchnorm_fallback` puts a stand-in module into ``sys.modules`` that maps
them to ``torch.nn.BatchNorm2d`` / ``torch.nn.DataParallel``: exact for CPU and one-GPU runs.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

from torch import nn

from .errors import SanSpadeError

#: Files that make a directory a SPADE checkout (NVlabs/SPADE layout).
REQUIRED_FILES = (
    "train.py",
    "test.py",
    "options/train_options.py",
    "models/pix2pix_model.py",
    "models/networks/__init__.py",
    "models/networks/discriminator.py",
    "models/networks/normalization.py",
    "trainers/pix2pix_trainer.py",
    "util/util.py",
)
#: Top-level package names SPADE imports from its root; they must come from the checkout.
TOP_LEVEL = ("models", "options", "data", "trainers", "util")
SYNC_BN = "models.networks.sync_batchnorm"
SYNC_BN_HOWTO = (
    "for multi-GPU runs get the real one: cd <spade-root>/models/networks && "
    "git clone https://github.com/vacancy/Synchronized-BatchNorm-PyTorch && "
    "cp -rf Synchronized-BatchNorm-PyTorch/sync_batchnorm ."
)


def validate_checkout(root: Path) -> Path:
    """The resolved ``root`` if it is a SPADE checkout; else :class:`SanSpadeError` naming what is missing."""
    root = Path(root).expanduser()
    if not root.exists():
        raise SanSpadeError(f"--spade-root {root}: no such directory")
    if not root.is_dir():
        raise SanSpadeError(f"--spade-root {root}: expected a directory (a SPADE checkout), got a file")
    root = root.resolve()
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if missing:
        raise SanSpadeError(
            f"--spade-root {root} is not an NVlabs/SPADE checkout: missing {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_FILES[:4])}, ...)"
        )
    disc = (root / "models/networks/discriminator.py").read_text(errors="replace")
    if "MultiscaleDiscriminator" not in disc and "NLayerDiscriminator" not in disc:
        raise SanSpadeError(
            f"--spade-root {root} is not an NVlabs/SPADE checkout: models/networks/discriminator.py defines "
            "neither MultiscaleDiscriminator nor NLayerDiscriminator"
        )
    return root


def has_sync_batchnorm(root: Path) -> bool:
    """Whether the checkout holds the real ``models/networks/sync_batchnorm`` package."""
    return (root / "models/networks/sync_batchnorm/__init__.py").is_file()


def install_sync_batchnorm_fallback() -> types.ModuleType:
    """Put the single-process stand-in for ``models.networks.sync_batchnorm`` into ``sys.modules``."""
    module = types.ModuleType(
        SYNC_BN,
        "san_spade stand-in: SynchronizedBatchNorm2d = nn.BatchNorm2d (per-device "
        "statistics), DataParallelWithCallback = nn.DataParallel",
    )
    module.SynchronizedBatchNorm2d = nn.BatchNorm2d  # type: ignore[attr-defined]
    module.DataParallelWithCallback = nn.DataParallel  # type: ignore[attr-defined]
    module.__san_spade_fallback__ = True  # type: ignore[attr-defined]
    sys.modules[SYNC_BN] = module
    return module


def count_gpu_ids(spade_args: list[str]) -> int:
    """How many GPUs SPADE's ``--gpu_ids`` asks for (its default ``0`` is one GPU)."""
    value = "0"
    for i, arg in enumerate(spade_args):
        if arg == "--gpu_ids" and i + 1 < len(spade_args):
            value = spade_args[i + 1]
        elif arg.startswith("--gpu_ids="):
            value = arg.split("=", 1)[1]
    ids = [s for s in value.split(",") if s.strip()]
    return sum(1 for s in ids if s.strip().lstrip("-").isdigit() and int(s) >= 0)


def import_spade(root: Path) -> dict[str, types.ModuleType]:
    """Import the SPADE modules the patch needs, from ``root`` (already first on ``sys.path``)."""
    for name in TOP_LEVEL:
        loaded = sys.modules.get(name)
        where = getattr(loaded, "__file__", None) or ""
        if loaded is not None and not Path(where).resolve().is_relative_to(root):
            raise SanSpadeError(f"a package named {name!r} from {where or 'elsewhere'} shadows the SPADE checkout")
    names = ("models.networks", "models.pix2pix_model", "trainers.pix2pix_trainer", "options.base_options", "util.util")
    modules = {}
    for name in names:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as err:
            raise SanSpadeError(
                f"cannot import SPADE's {name} from {root}: {err} (SPADE needs: pip install torchvision dominate dill "
                "scipy pillow)"
            ) from None
        where = Path(modules[name].__file__ or "").resolve()
        if not where.is_relative_to(root):
            raise SanSpadeError(f"SPADE's {name} was imported from {where}, not from the checkout {root}")
    return modules
