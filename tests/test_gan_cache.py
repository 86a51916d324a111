"""The benchmarks' file writes: atomic, and safe when several runs fill one cache at the same time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.gan.checkpoint import atomic_json, atomic_save, atomic_write
from benchmarks.gan.data import CLASSES, load_cifar10


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"step": 1}, path)

    def broken(f):
        f.write(b"half a file")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(path, broken)
    assert torch.load(path) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_concurrent_writers_of_one_path_each_rename_a_complete_file(tmp_path):
    """Writer B runs to completion while writer A is half-way: with one shared temporary name B would truncate A's
    file and rename it away, and A's rename would fail (the race seen when several runs filled a fresh cache)."""
    path = tmp_path / "train_x.npy"
    a, b = np.arange(100_000), np.arange(100_000) * 2

    def write_a(f):
        f.write(np.lib.format.magic(1, 0))  # A has started its file ...
        atomic_write(path, lambda g: np.save(g, b))  # ... B writes the same path in full meanwhile ...
        f.seek(0)
        np.save(f, a)  # ... then A finishes

    atomic_write(path, write_a)
    np.testing.assert_array_equal(np.load(path), a)  # the last rename wins, and it is a complete file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_x.npy"]


def test_atomic_json_round_trips(tmp_path):
    atomic_json({"a": [1, 2]}, tmp_path / "r.json")
    assert (tmp_path / "r.json").read_text().replace(" ", "").replace("\n", "") == '{"a":[1,2]}'


def test_data_cache_is_filled_once_without_temporaries(tmp_path):
    src = tmp_path / "cifar"
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (src / "train" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src / "train" / name / f"{i}.png")
    cache = tmp_path / "cache"
    first = load_cifar10(src, "train", cache=cache)
    assert first.x.shape == (20, 3, 32, 32) and first.y.tolist() == [c for c in range(10) for _ in range(2)]
    (entry,) = cache.iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["train_x.npy", "train_y.npy"]
    written = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    again = load_cifar10(src, "train", cache=cache)  # read from the cache, not written again
    assert torch.equal(again.x, first.x)
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == written


def test_a_gzipped_result_reads_like_the_plain_one(tmp_path):
    """Committed runs are stored as result.json.gz: reused, refused and reported stale exactly like result.json."""
    import gzip
    import json

    from benchmarks.gan.checkpoint import RunFiles, read_json

    config = {"setup": "cnn", "seed": 0}
    files = RunFiles(tmp_path / "run", config)
    assert files.finished() is None and files.stored_hash() is None
    files.finish({"final": {"fid": 12.5}}, None)
    plain = files.finished()
    packed = files.result.with_name("result.json.gz")
    packed.write_bytes(gzip.compress(files.result.read_bytes()))
    files.result.unlink()
    assert files.finished() == plain and read_json(files.result)["final"] == {"fid": 12.5}
    assert files.stored_hash() == files.hash and not files.is_stale()
    other = RunFiles(tmp_path / "run", {"setup": "cnn", "seed": 1})
    assert other.is_stale()
    with pytest.raises(RuntimeError, match=r"holds a finished run of another config"):
        other.finished()
    packed.write_bytes(gzip.compress(json.dumps({"config_hash": "x"}).encode()))
    files.result.write_text(json.dumps({**plain, "note": "newer"}))  # a plain result.json wins over the .gz
    assert files.finished()["note"] == "newer"
    with pytest.raises(FileNotFoundError, match=r"nor missing\.json\.xz or missing\.json\.gz"):
        read_json(tmp_path / "missing.json")


def test_pack_stores_a_result_as_xz_that_reads_back_and_wins_over_gz(tmp_path):
    """Committed runs are packed with xz (benchmarks.gan.checkpoint.pack): lossless, reproducible byte for byte,
    read like result.json, and preferred over an older result.json.gz."""
    import gzip
    import json

    from benchmarks.gan.checkpoint import RunFiles, pack, read_json

    files = RunFiles(tmp_path / "run", {"setup": "cnn", "seed": 0})
    files.finish({"final": {"fid": 12.5}, "history": {"loss": [{"step": s, "d": s / 7} for s in range(500)]}}, None)
    plain_bytes, plain = files.result.read_bytes(), files.finished()
    files.result.with_name("result.json.gz").write_bytes(gzip.compress(json.dumps({"config_hash": "old"}).encode()))
    packed = pack(files.result)
    assert packed.name == "result.json.xz" and sorted(p.name for p in packed.parent.iterdir()) == ["result.json.xz"]
    assert packed.stat().st_size < len(plain_bytes) and files.finished() == plain == read_json(files.result)
    first = packed.read_bytes()
    files.result.write_bytes(plain_bytes)
    assert pack(files.result).read_bytes() == first  # the same bytes every time: a re-pack changes no file
    packed.with_name("result.json.gz").write_bytes(gzip.compress(json.dumps({"config_hash": "old"}).encode()))
    assert files.finished() == plain and not files.is_stale()  # the .xz wins over the .gz


def test_pack_folder_packs_run_results_and_the_gpu_results_file(tmp_path):
    """``python -m benchmarks.gan.checkpoint FOLDER`` packs finished runs and ``gpu_results.json`` (committed under
    benchmarks/results/gpu/, up to 15 MiB, it would otherwise crowd out the data a later device run carries), and
    nothing else."""
    import json

    from benchmarks.gan.checkpoint import pack_folder, read_json

    gpu = {"meta": {"device": "H200"}, "quality": {"results": [{"fid": f} for f in range(200)]}}
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "gpu_results.json").write_text(json.dumps(gpu))
    (tmp_path / "gpu" / "gpu_report.md").write_text("# report")
    run = tmp_path / "runs" / "cnn" / "san" / "seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"final": {"fid": 9.5}}))
    packed = pack_folder(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in packed) == [
        "gpu/gpu_results.json.xz",
        "runs/cnn/san/seed0/result.json.xz",
    ]
    assert read_json(tmp_path / "gpu" / "gpu_results.json") == gpu
    assert (tmp_path / "gpu" / "gpu_report.md").read_text() == "# report"
    assert not (tmp_path / "gpu" / "gpu_results.json").exists() and pack_folder(tmp_path) == packed  # idempotent
