"""CIFAR-10 as one uint8 array in memory, decoded once and cached as ``.npy``; plus a tiny synthetic set for tests.

Sources (``--data``):

- the shared JPEG tarball ``cifar10_jpeg.tar.gz`` (``{train,test}/<class>/NNNN.jpg``; default): read once,
  the members decoded with Pillow straight from the archive into the cache dir's ``train_x.npy``
  (N, 32, 32, 3) uint8 and ``train_y.npy`` (class order; NNNN order within a class);
- a torchvision-style CIFAR-10 root (``cifar-10-batches-py/`` with the python pickles), or that folder itself;
- an image folder laid out like the tarball (``train/<class>/*.png|jpg``);
- ``fake`` or ``fake:N``: N synthetic 32×32 images (smooth colour blobs, 10 classes) for tests.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .checkpoint import atomic_write

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_SOURCE = SHARED_DATA / "cifar10" / "cifar10_jpeg.tar.gz"
DEFAULT_CACHE = REPO / ".data"


class DataMissing(FileNotFoundError):
    """The data source does not exist; the message is one line saying what to pass instead."""


@dataclass
class ImageSet:
    """``x``: (N, 3, H, W) uint8; ``y``: (N,) int64 labels; ``name``: where it came from (for cache keys)."""

    x: Tensor
    y: Tensor
    name: str

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Images in [-1, 1] (float32) and labels, on ``device``."""
        x = self.x[idx].to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
        return x, self.y[idx].to(device)


class Sampler:
    """Batches drawn epoch by epoch from a seeded permutation; its state is saved with the checkpoints."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch = n, batch
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.gen), 0

    def next(self) -> Tensor:
        if self.pos + self.batch > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.perm, self.pos = state["perm"], int(state["pos"])


def load_cifar10(source: str | Path | None = None, split: str = "train", cache: Path = DEFAULT_CACHE) -> ImageSet:
    """Load a CIFAR-10 split (``train`` or ``test``) from ``source`` (see the module docstring)."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    text = str(source) if source is not None else str(DEFAULT_SOURCE)
    if text == "fake" or text.startswith("fake:"):
        fake = fake_cifar(int(text.split(":", 1)[1]) if ":" in text else 512, seed=0 if split == "train" else 1)
        return ImageSet(fake.x, fake.y, data_name(source, split))
    path = _existing(source)
    key = data_identity(source)
    out = cache / key
    x_file, y_file = out / f"{split}_x.npy", out / f"{split}_y.npy"
    if not (x_file.exists() and y_file.exists()):
        out.mkdir(parents=True, exist_ok=True)
        x, y = _decode(path, split, out)
        atomic_write(y_file, lambda f: np.save(f, y))
        atomic_write(x_file, lambda f: np.save(f, x))
    x = torch.from_numpy(np.load(x_file)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(x, torch.from_numpy(np.load(y_file)).long(), f"{key}/{split}")


def data_name(source: str | Path | None, split: str = "train") -> str:
    """The ``name`` that ``load_cifar10(source, split)`` gives its images, computed without decoding them."""
    return f"{data_identity(source)}/{split}"


def _existing(source: str | Path | None) -> Path:
    path = Path(str(source) if source is not None else DEFAULT_SOURCE).expanduser().resolve()
    if not path.exists():
        hint = " (the shared data dir is absent)" if source is None else ""
        raise DataMissing(
            f"CIFAR-10 not found at {path}{hint}: pass --data <cifar10_jpeg.tar.gz | torchvision CIFAR-10 root "
            "| image folder with train/<class>/> or --data fake"
        )
    return path


def data_identity(source: str | Path | None = None) -> str:
    """What the data *is*, independent of where it lies: ``cifar10-<stem>-<sha1 of the content>`` (12 hex digits).

    Hashes the archive's bytes (a file), or the relative paths and bytes of the files a folder source is read
    from (the pickles, or ``train/``/``test/`` images); ``fake:N`` is its own name. Fast next to decoding
    (≈ 0.1 s for the 19 MB tarball), so a run's identity can be checked before any heavy work.
    """
    text = str(source) if source is not None else str(DEFAULT_SOURCE)
    if text == "fake" or text.startswith("fake:"):
        return f"fake{int(text.split(':', 1)[1]) if ':' in text else 512}"
    path = _existing(source)
    h = hashlib.sha1()
    if path.is_file():
        files = [path]
    else:
        pickles = next((p for p in (path / "cifar-10-batches-py", path) if (p / "test_batch").is_file()), None)
        base = pickles if pickles is not None else path
        pattern = "*_batch*" if pickles is not None else "*/*/*"
        files = sorted(f for f in base.glob(pattern) if f.is_file())
        if pickles is None:
            files = [f for f in files if f.relative_to(base).parts[0] in ("train", "test")]
    for f in files:
        h.update(f.relative_to(path.parent if path.is_file() else path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return f"cifar10-{path.name.split('.')[0]}-{h.hexdigest()[:12]}"


def _decode(path: Path, split: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _decode_tar(path, split)
    pickles = next((p for p in (path / "cifar-10-batches-py", path) if (p / "test_batch").is_file()), None)
    if pickles is not None:
        return _decode_pickles(pickles, split)
    if (path / split).is_dir():
        return _decode_folder(path / split)
    raise DataMissing(f"{path}: expected a .tar.gz, a torchvision CIFAR-10 root (cifar-10-batches-py/) or {split}/")


def _decode_tar(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``<split>/<class>/*.jpg`` members straight from the archive (no 60k small files on disk)."""
    from PIL import Image

    found: dict[tuple[int, str], np.ndarray] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.lstrip("./").split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] != split or parts[1] not in CLASSES:
                continue
            f = tar.extractfile(member)
            assert f is not None
            with Image.open(io.BytesIO(f.read())) as img:
                found[(CLASSES.index(parts[1]), parts[2])] = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if not found:
        raise DataMissing(f"{path}: no {split}/<class>/*.jpg members (expected classes {CLASSES})")
    keys = sorted(found)
    return np.stack([found[k] for k in keys]), np.asarray([k[0] for k in keys], dtype=np.int64)


def _decode_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        files = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise DataMissing(f"{folder / name}: no images (expected {folder}/<class>/*.jpg for {CLASSES})")
        for file in files:
            with Image.open(file) as img:
                xs.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        ys += [label] * len(files)
    x = np.stack(xs)
    if x.shape[1:] != (32, 32, 3):
        raise ValueError(f"{folder}: expected 32×32 RGB images, got {x.shape[1:]}")
    return x, np.asarray(ys, dtype=np.int64)


def _decode_pickles(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch["labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def fake_cifar(n: int = 512, seed: int = 0) -> ImageSet:
    """``n`` synthetic 32×32 images: a class-coloured Gaussian blob at a random place on a dark background."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=gen)
    palette = torch.rand(10, 3, generator=gen) * 0.8 + 0.2
    grid = torch.arange(32.0)
    centre = torch.rand(n, 2, generator=gen) * 20 + 6
    d2 = (grid[None, :, None] - centre[:, 0, None, None]) ** 2 + (grid[None, None, :] - centre[:, 1, None, None]) ** 2
    blob = torch.exp(-d2 / (2 * (3 + 3 * torch.rand(n, 1, 1, generator=gen)) ** 2))
    x = blob[:, None] * palette[y][:, :, None, None] + 0.05 * torch.rand(n, 3, 32, 32, generator=gen)
    return ImageSet((x.clamp(0, 1) * 255).round().to(torch.uint8), y, f"fake{n}-seed{seed}")
