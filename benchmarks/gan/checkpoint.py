"""Per-run files: ``checkpoint.pt`` (everything needed to resume), ``result.json`` (finished), ``final_models.pt``.

A finished run's ``result.json`` may also be stored packed, as ``result.json.xz`` (how the committed runs under
``benchmarks/results/`` are kept, :func:`pack`: their per-step logs are most of the repository's size, and the
repository travels to the GPU machine with the run's data under a 64 MiB cap) or ``result.json.gz``; either is read
the same way (:func:`read_json`).

A run directory belongs to one run config (hashed); a different config there is refused with a clear message
rather than silently mixed. Writes go to a temporary file first and are renamed, so a killed process leaves
either the previous checkpoint or the new one, never half a file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable, Optional

import torch


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file of this call's own (pid + random suffix), then rename it into place.

    A killed process leaves the old file or the new one, never half a file; concurrent writers of one path (several
    runs filling a fresh data or reference-statistics cache at once) each rename a complete file of their own instead
    of truncating a shared temporary name under each other.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_json(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


#: packed copies of a JSON file, by suffix, in the order they are looked for (a plain file wins over all)
UNPACK: dict[str, Callable[[bytes], bytes]] = {".xz": lzma.decompress, ".gz": gzip.decompress}


def stored(path: Path) -> Optional[Path]:
    """``path`` when it exists, else its packed copy ``path.xz`` or ``path.gz`` (first found), else ``None``."""
    if path.is_file():
        return path
    for suffix in UNPACK:
        packed = path.with_name(path.name + suffix)
        if packed.is_file():
            return packed
    return None


def _raw(path: Path) -> bytes:
    """The bytes of ``path``, or the unpacked bytes of its packed copy when only that exists (see :func:`stored`)."""
    found = stored(path)
    if found is None:
        raise FileNotFoundError(f"{path} not found (nor {path.name}.xz or {path.name}.gz)")
    data = found.read_bytes()
    return UNPACK[found.suffix](data) if found != path else data


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or in its packed copy ``path.xz`` (xz) or ``path.gz`` (gzip) when only that exists."""
    return json.loads(_raw(path))


def pack(path: Path) -> Path:
    """Store the JSON that :func:`read_json` reads for ``path`` (the plain file, else its ``.gz``) as ``path.xz`` (xz,
    preset 9: lossless and byte-reproducible), checked by reading it back, and remove ``path`` and any ``path.gz``;
    returns the packed file (left as it is when it is already what is read)."""
    packed = path.with_name(path.name + ".xz")
    if stored(path) == packed:
        return packed
    data = _raw(path)
    atomic_write(packed, lambda f: f.write(lzma.compress(data, preset=9)))
    if lzma.decompress(packed.read_bytes()) != data:
        raise RuntimeError(f"pack: {packed} does not read back as {path}")
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".gz").unlink(missing_ok=True)
    return packed


class RunFiles:
    """The files of one run directory, checked against the run's config hash."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.dir, self.config, self.hash = run_dir, config, config_hash(config)
        self.checkpoint, self.result, self.models = (
            run_dir / "checkpoint.pt",
            run_dir / "result.json",
            run_dir / "final_models.pt",
        )
        self.sidecar = run_dir / "run.json"

    def finished(self) -> Optional[dict[str, Any]]:
        """The stored result when this exact config finished here, else ``None``."""
        if stored(self.result) is None:
            return None
        result = read_json(self.result)
        if result.get("config_hash") != self.hash:
            raise RuntimeError(
                f"{self.dir} holds a finished run of another config ({result.get('config_hash')} ≠ {self.hash}); "
                "rerun with --fresh (discards such runs) or use another --out"
            )
        return result

    def stored_hash(self) -> Optional[str]:
        """The config hash of what this directory holds (finished result, or the checkpoint's sidecar
        ``run.json``; the checkpoint itself for directories written before the sidecar); ``None`` when empty."""
        for f in (self.result, self.sidecar):
            if stored(f) is not None:
                try:
                    return str(read_json(f).get("config_hash"))
                except ValueError:
                    return "unreadable"
        if self.checkpoint.is_file():
            try:
                return str(torch.load(self.checkpoint, map_location="cpu", weights_only=False).get("config_hash"))
            except Exception:  # any unreadable checkpoint is stale
                return "unreadable"
        return None

    def is_stale(self) -> bool:
        """True when this directory holds a run (finished or not) of another config."""
        stored = self.stored_hash()
        return stored is not None and stored != self.hash

    def load_checkpoint(self, map_location: torch.device) -> Optional[dict[str, Any]]:
        if not self.checkpoint.is_file():
            return None
        state = torch.load(self.checkpoint, map_location=map_location, weights_only=False)
        if state.get("config_hash") != self.hash:
            raise RuntimeError(
                f"{self.checkpoint} belongs to another config ({state.get('config_hash')} ≠ {self.hash}); "
                "rerun with --fresh (discards such runs) or use another --out"
            )
        return state

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_save({**state, "config_hash": self.hash, "config": self.config}, self.checkpoint)
        atomic_json({"config_hash": self.hash, "config": self.config}, self.sidecar)

    def finish(self, result: dict[str, Any], models: Optional[dict[str, Any]]) -> None:
        """Store the result (and the final weights, when given), then drop the (large) resumable checkpoint."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if models is not None:
            atomic_save(models, self.models)
        atomic_json({**result, "config_hash": self.hash, "config": self.config}, self.result)
        self.checkpoint.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


#: What ``python -m benchmarks.gan.checkpoint FOLDER`` packs: finished runs, and the GPU run's results file (up to
#: 15 MiB; committed under ``benchmarks/results/gpu/`` it must leave room for the data a later device run carries).
PACKED_NAMES = ("result.json", "gpu_results.json")


def pack_folder(folder: Path) -> list[Path]:
    """:func:`pack` every file named in :data:`PACKED_NAMES` (plain or ``.gz``) under ``folder``; the packed files."""
    found = {f.with_name(name) for name in PACKED_NAMES for f in folder.rglob(name + "*")}
    return [pack(plain) for plain in sorted(found) if stored(plain) is not None]


if __name__ == "__main__":  # python -m benchmarks.gan.checkpoint FOLDER...: pack every result file under them
    import sys

    for folder in sys.argv[1:] or ["benchmarks/results"]:
        for packed in pack_folder(Path(folder)):
            print(packed)
