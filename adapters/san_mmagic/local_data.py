"""Local data only: find CIFAR-10 / DIV2K on disk, or fail in one line naming the variable to set.

Nothing here downloads or creates directories. :func:`find_cifar10` accepts, under a root ``R``
(``SAN_CIFAR10_ROOT``; each layout is looked for in ``R/<data_prefix>`` first, then in ``R``):

- an image folder ``train/<class>/*.png|jpg`` (and ``test/<class>/*`` for the test split), class
  folders named by CIFAR-10's class names (``airplane`` … ``truck``) or by their indices ``0`` … ``9``;
- torchvision's folder ``cifar-10-batches-py/`` (``data_batch_1`` … ``data_batch_5``, ``test_batch``),
  read without checksums.

This repository's copy becomes the first layout with :data:`CIFAR10_PREPARE`. :func:`check_local_data`
walks a config's train/val/test datasets before anything is built (``python -m san_mmagic.train`` runs
it); under mmagic's own ``tools/train.py``, ``LocalCIFAR10`` raises the same one-line error when built.
This module needs no MMEngine.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_PREPARE",
    "MissingDataError",
    "check_local_data",
    "find_cifar10",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
PICKLES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_PREPARE = "mkdir -p data/cifar10 && tar -xzf ../shared/data/cifar10/cifar10_jpeg.tar.gz -C data/cifar10"
CIFAR10_LAYOUT = (
    "expected an image folder train/<class>/*.png|jpg (class = name or index) or torchvision's "
    "cifar-10-batches-py/ in <root>/cifar10 or <root>; this repository's copy: " + CIFAR10_PREPARE
)
DATASET_ENV = {  # dataset type -> the shipped configs' environment variable for its root
    "LocalCIFAR10": "SAN_CIFAR10_ROOT",
    "CIFAR10": "SAN_CIFAR10_ROOT",
    "BasicImageDataset": "SAN_DIV2K_ROOT",
}


class MissingDataError(FileNotFoundError):
    """A data root or file that training reads is not there; the message names the variable to set."""


def _has_images(folder: str) -> bool:
    if not os.path.isdir(folder):
        return False
    for entry in os.scandir(folder):
        if entry.is_dir() and any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(entry.path)):
            return True
    return False


def find_cifar10(data_root: str, data_prefix: str = "cifar10", split: str = "train") -> tuple[str, str]:
    """``(kind, folder)``: ``('images', R/train)`` or ``('pickles', R/cifar-10-batches-py)`` for ``split``.

    Raises :class:`MissingDataError` (one line naming ``SAN_CIFAR10_ROOT`` and the layouts) otherwise.
    """
    if split not in PICKLES:
        raise ValueError(f"find_cifar10: expected split 'train' or 'test', got {split!r}")
    root = os.path.expanduser(str(data_root or "."))
    candidates = [os.path.join(root, data_prefix), root] if data_prefix else [root]
    for base in candidates:
        if _has_images(os.path.join(base, split)):
            return "images", os.path.join(base, split)
        pickles = os.path.join(base, "cifar-10-batches-py")
        if all(os.path.isfile(os.path.join(pickles, name)) for name in PICKLES[split]):
            return "pickles", pickles
    where = "does not exist" if not os.path.isdir(root) else "holds no CIFAR-10 " + split + " split"
    raise MissingDataError(f"SAN_CIFAR10_ROOT: CIFAR-10 root {root!r} {where}; {CIFAR10_LAYOUT}")


def _datasets(cfg: Mapping) -> list[tuple[str, Mapping]]:
    out = []
    for phase in ("train", "val", "test"):
        loaders = cfg.get(f"{phase}_dataloader") or []
        for i, loader in enumerate(loaders if isinstance(loaders, (list, tuple)) else [loaders]):
            dataset = loader.get("dataset") if isinstance(loader, Mapping) else None
            if isinstance(dataset, Mapping):
                key = f"{phase}_dataloader" + (f"[{i}]" if isinstance(loaders, (list, tuple)) else "")
                out.append((f"{key}.dataset", dataset))
    return out


def _env_hint(kind: str) -> str:
    env = DATASET_ENV.get(kind)
    return f"set {env} (the shipped configs' variable) or " if env else "set "


def check_local_data(cfg: Mapping, phases: Optional[tuple[str, ...]] = None) -> None:
    """Raise :class:`MissingDataError` for the first dataset of ``cfg`` whose local root or files are missing.

    ``LocalCIFAR10``/``CIFAR10``: :func:`find_cifar10`; other datasets: ``data_root`` must exist, and
    a relative ``ann_file`` must exist under it. Remote roots (``s3://``…) are left alone.
    """
    for key, dataset in _datasets(cfg):
        if phases is not None and key.split("_", 1)[0] not in phases:
            continue
        kind = str(dataset.get("type", "")).split(".")[-1].split("::")[-1]
        root = dataset.get("data_root", "")
        if not isinstance(root, str) or "://" in root:
            continue
        if kind in ("LocalCIFAR10", "CIFAR10"):
            prefix = dataset.get("data_prefix", "cifar10")
            split = "test" if dataset.get("test_mode", False) else "train"
            try:
                find_cifar10(root, prefix if isinstance(prefix, str) else "cifar10", split)
            except MissingDataError as err:
                raise MissingDataError(f"{key}.data_root: {err}") from None
            continue
        if root and not os.path.isdir(root):
            raise MissingDataError(
                f"{key}.data_root: folder not found ({root!r}); {_env_hint(kind)}--cfg-options {key}.data_root=PATH"
            )
        ann = dataset.get("ann_file", "")
        if isinstance(ann, str) and ann:
            path = ann if os.path.isabs(ann) else os.path.join(root, ann)
            if not os.path.isfile(path):
                raise MissingDataError(
                    f"{key}.ann_file: {path!r} not found (the data root holds no {ann!r}; prepare the data as "
                    f"mmagic's docs say, {_env_hint(kind)}--cfg-options {key}.data_root=PATH)"
                )
        prefixes = dataset.get("data_prefix")
        for name, sub in prefixes.items() if isinstance(prefixes, Mapping) else []:
            if isinstance(sub, str) and sub and not os.path.isdir(os.path.join(root, sub)):
                raise MissingDataError(
                    f"{key}.data_prefix.{name}: folder {os.path.join(root, sub)!r} not found; "
                    f"{_env_hint(kind)}--cfg-options {key}.data_root=PATH"
                )
