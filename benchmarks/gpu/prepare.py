"""``python -m benchmarks.gpu prepare``: pack what the GPU run reads into one ignored folder (default ``.gpu_data/``)
that the device machine gets with ``carry`` (≤ 64 MiB together with the repository).

That machine has torch, numpy, scipy, matplotlib and tqdm only (no Pillow, no torchvision), so the JPEG tarball is
decoded here: ``cifar10_train.u8.xz`` holds a class-balanced subset of the training images (default 22,000 = the
first 2,200 of each class; all 50,000 do not fit: raw 150 MB, ≈ 100 MB compressed) as uint8, each row delta-coded
along the width, planar, LZMA-compressed (≈ 67 % of raw: 44 MiB), then the labels. ``classifier.th`` is the resnet20
checkpoint, copied as is; ``data.json`` says what both are. ``--data fake:N --random-classifier`` makes a
synthetic, clearly labelled stand-in (tests and CI only).

What travels to the device machine is the repository's tree (tracked files and untracked files git does not
ignore) plus the carried folder, together ≤ 64 MiB (:data:`TRAVEL_LIMIT_MIB`): ``prepare`` adds both up and
refuses a folder that would not fit, saying how many images would (a CI test keeps the tree small enough for the
default 22,000).
"""

from __future__ import annotations

import json
import lzma
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..gan.data import DEFAULT_CACHE, ImageSet, load_cifar10
from ..gan.feature_nets import DEFAULT_CLASSIFIER

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DEST = REPO / ".gpu_data"
DATA_FILE, META_FILE, CLASSIFIER_FILE = "cifar10_train.u8.xz", "data.json", "classifier.th"
TRAVEL_LIMIT_MIB = 64.0  # the device tool's cap on the tree plus carried paths
TRAVEL_MARGIN_MIB = 1.0  # room for a few commits between `prepare` and the device call
DEFAULT_IMAGES = 22_000
DEFAULT_MIB = 44.6  # the real folder at DEFAULT_IMAGES (measured: 46,712,743 bytes; synthetic data packs differently)
MAX_TOTAL_MIB = 56  # where the tree's size is unknown (no git): leaves 8 MiB for the repository


def tree_mib(repo: Path = REPO) -> float | None:
    """MiB of the repository's tree as the device tool sends it (tracked files and untracked files git does not
    ignore, as they are in the working tree); ``None`` without git."""
    cmd = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    try:
        names = subprocess.run(cmd, cwd=repo, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    files = {repo / n for n in names if n}
    return sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink()) / 2**20


def check_travel(tree: float | None, folder_mib: float, data_mib: float, images: int) -> None:
    """Refuse a prepared folder that would not travel with the tree (``SystemExit`` naming what would fit)."""
    if tree is None:
        if folder_mib > MAX_TOTAL_MIB:
            raise SystemExit(
                f"prepare: the folder holds {folder_mib:.1f} MiB > {MAX_TOTAL_MIB} MiB: pass fewer --images"
            )
        return
    room = TRAVEL_LIMIT_MIB - TRAVEL_MARGIN_MIB - tree
    if folder_mib > room:
        fit = int(round((room - (folder_mib - data_mib)) * images / data_mib, 6) // 10) * 10  # whole tens
        raise SystemExit(
            f"prepare: the repository's tree ({tree:.1f} MiB) and this folder ({folder_mib:.1f} MiB) come to "
            f"{tree + folder_mib:.1f} MiB, over the {TRAVEL_LIMIT_MIB - TRAVEL_MARGIN_MIB:.0f} MiB that may travel to "
            f"the device machine: pass --images {max(fit, 0)} (fits now), or shrink the tree (largest files: "
            "`git ls-files -z | xargs -0 du -b | sort -n | tail`)"
        )


def encode(x: np.ndarray, y: np.ndarray) -> bytes:
    """(N, 3, H, W) uint8 images and (N,) labels → LZMA bytes (width-delta coded, planar, then the labels)."""
    d = np.diff(x.astype(np.int16), axis=3, prepend=0).astype(np.uint8)  # mod 256
    return lzma.compress(d.tobytes() + y.astype(np.uint8).tobytes(), preset=6)


def decode(blob: bytes, n: int, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`encode`: exact uint8 images (N, 3, H, W) and int64 labels."""
    raw = np.frombuffer(lzma.decompress(blob), dtype=np.uint8)
    size = n * int(np.prod(shape))
    d = raw[:size].reshape(n, *shape)
    x = np.cumsum(d, axis=3, dtype=np.uint8)  # uint8 arithmetic wraps mod 256, undoing the delta exactly
    return torch.from_numpy(x.copy()), torch.from_numpy(raw[size : size + n].astype(np.int64))


def balanced_subset(y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first ``n // 10`` images of each class (in data order), then sorted."""
    per = max(1, n // 10)
    idx = [torch.nonzero(y == c).flatten()[:per] for c in range(10)]
    return torch.cat(idx).sort().values


def prepare(
    source: Optional[str],
    dest: Path = DEFAULT_DEST,
    images: int = DEFAULT_IMAGES,
    classifier: Optional[Path] = None,
    random_classifier: bool = False,
    cache: Path = DEFAULT_CACHE,
) -> dict[str, Any]:
    """Write ``dest/{cifar10_train.u8.xz, classifier.th, data.json}``; returns the ``data.json`` content."""
    data: ImageSet = load_cifar10(source, "train", cache)
    idx = balanced_subset(data.y, min(images, len(data)))
    x, y = data.x[idx].numpy(), data.y[idx].numpy()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / DATA_FILE).write_bytes(encode(x, y))
    if random_classifier:
        from ..gan.classifier import CifarResNet

        torch.manual_seed(0)
        state = {"module." + k: v for k, v in CifarResNet(3).state_dict().items()}
        torch.save({"state_dict": state, "best_prec1": 0.0, "note": "UNTRAINED resnet20, tests only"},
                   dest / CLASSIFIER_FILE)  # fmt: skip
        clf_name = "random-resnet20-untrained (TEST ONLY)"
    else:
        src = Path(classifier) if classifier else DEFAULT_CLASSIFIER
        if not src.is_file():
            raise FileNotFoundError(
                f"classifier weights not found at {src}: pass --classifier PATH "
                "(a cifar10_classifiers/resnet20-*.th file) or --random-classifier (tests)"
            )
        shutil.copyfile(src, dest / CLASSIFIER_FILE)
        clf_name = src.stem
    meta = {
        "images": len(idx), "shape": list(x.shape[1:]), "source": data.name, "source_images": len(data),
        "subset": f"first {len(idx) // 10} images of each class, in the source's order", "classifier": clf_name,
        "synthetic": data.name.startswith("fake"), "encoding": "uint8, width-delta mod 256, planar, LZMA; labels after",
    }  # fmt: skip
    (dest / META_FILE).write_text(json.dumps(meta, indent=1))
    total = sum(f.stat().st_size for f in dest.iterdir() if f.is_file()) / 2**20
    tree = tree_mib()
    meta["total_mib"], meta["tree_mib"] = round(total, 1), None if tree is None else round(tree, 1)
    try:
        check_travel(tree, total, (dest / DATA_FILE).stat().st_size / 2**20, len(idx))
    except SystemExit:  # leave no folder that the device tool would refuse (or that a run would half-use)
        for name in (DATA_FILE, META_FILE):
            (dest / name).unlink(missing_ok=True)
        raise
    return meta


def load_prepared(folder: Path) -> tuple[ImageSet, Path, dict[str, Any]]:
    """The images (uint8, on CPU), the classifier file and ``data.json`` of a prepared folder."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found: run `python -m benchmarks.gpu prepare` first (and carry {folder.name} along)"
        )
    meta = json.loads(meta_path.read_text())
    x, y = decode((folder / DATA_FILE).read_bytes(), meta["images"], tuple(meta["shape"]))
    name = f"{meta['source']}[{meta['images']} balanced]"
    return ImageSet(x, y, name), folder / CLASSIFIER_FILE, meta
