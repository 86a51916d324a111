"""``LocalCIFAR10``: mmagic's CIFAR-10 data set read from local files only (never downloads, never creates folders).

The shipped CIFAR-10 configs use it in place of mmagic's ``CIFAR10`` (same arguments, same samples:
``gt`` an RGB ``uint8`` HxWx3 array, ``gt_label``, ``gt_channel_order='RGB'``, CIFAR-10's class names),
so the pipelines and metrics are unchanged. Layouts: see :mod:`san_mmagic.local_data`.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Optional

import numpy as np
from mmagic.datasets import CIFAR10
from mmagic.registry import DATASETS

from .local_data import CIFAR10_CLASSES, IMAGE_EXTENSIONS, PICKLES, find_cifar10

__all__ = ["LocalCIFAR10", "read_image_folder", "read_pickles"]


def _class_index(name: str) -> int:
    if name.isdigit() and int(name) < len(CIFAR10_CLASSES):
        return int(name)
    if name in CIFAR10_CLASSES:
        return CIFAR10_CLASSES.index(name)
    raise ValueError(
        f"LocalCIFAR10: class folder {name!r}: expected one of CIFAR-10's class names {list(CIFAR10_CLASSES)} "
        "or an index 0-9"
    )


def read_image_folder(folder: str) -> tuple[np.ndarray, list[int]]:
    """``folder/<class>/*.png|jpg`` as (N, H, W, 3) RGB uint8 and labels, in sorted (class, file) order."""
    import cv2

    images, labels = [], []
    for name in sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))):
        label = _class_index(name)
        for file in sorted(os.listdir(os.path.join(folder, name))):
            if not file.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(folder, name, file)
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"LocalCIFAR10: cannot read image {path!r}")
            images.append(np.ascontiguousarray(bgr[:, :, ::-1]))
            labels.append(label)
    return np.stack(images), labels


def read_pickles(folder: str, split: str) -> tuple[np.ndarray, list[int]]:
    """torchvision's ``cifar-10-batches-py`` batches of ``split`` as (N, 32, 32, 3) RGB uint8 and labels."""
    data: list[np.ndarray] = []
    labels: list[int] = []
    for name in PICKLES[split]:
        with open(os.path.join(folder, name), "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        data.append(np.asarray(entry["data"], dtype=np.uint8))
        labels.extend(int(v) for v in entry.get("labels", entry.get("fine_labels", [])))
    return np.vstack(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


@DATASETS.register_module()
class LocalCIFAR10(CIFAR10):
    """CIFAR-10 from ``data_root`` (``SAN_CIFAR10_ROOT`` in the configs): an image folder or torchvision's batches.

    Args:
        data_prefix: sub-folder of ``data_root`` looked at first (``'cifar10'``, mmagic's layout); then ``data_root``.
        test_mode: False reads the train split (``train/`` or ``data_batch_*``), True the test split.
        data_root: the root.
        download: must stay False (accepted for config compatibility with mmagic's ``CIFAR10``).
    """

    def __init__(
        self,
        data_prefix: str = "cifar10",
        test_mode: bool = False,
        metainfo: Optional[dict] = None,
        data_root: str = "",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        if download:
            raise ValueError("LocalCIFAR10: download=True is not supported (it reads local files only)")
        self._prefix_name = data_prefix
        super().__init__(
            data_prefix=data_prefix,
            test_mode=test_mode,
            metainfo=metainfo,
            data_root=data_root,
            download=False,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        """Samples as mmagic's CIFAR10 makes them, from the first local layout found."""
        split = "test" if self.test_mode else "train"
        kind, folder = find_cifar10(self.data_root, self._prefix_name, split)
        images, labels = read_image_folder(folder) if kind == "images" else read_pickles(folder, split)
        self._metainfo.setdefault("classes", CIFAR10_CLASSES)
        return [{"gt": img, "gt_label": int(label), "gt_channel_order": "RGB"} for img, label in zip(images, labels)]
