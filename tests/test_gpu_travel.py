"""What travels to the GPU machine (the repository's tree plus the carried ``.gpu_data``) must stay under the device
tool's 64 MiB, or the evidence run is refused before it starts: the tree leaves room for the default data, and
``prepare`` refuses (and removes) a folder that would not fit, saying how many images would. What comes back is
capped too (16 MiB a file): the results file stays under it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.gpu import prepare

REPO = Path(__file__).resolve().parents[1]


def test_the_tree_leaves_room_for_the_default_gpu_data():
    tree = prepare.tree_mib(REPO)
    if tree is None:
        pytest.skip("no git checkout: the tree's size is unknown")
    room = prepare.TRAVEL_LIMIT_MIB - prepare.TRAVEL_MARGIN_MIB
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode()
    files = [REPO / n for n in names.split("\0") if n and (REPO / n).is_file()]
    largest = sorted(files, key=lambda f: f.stat().st_size)[-5:]
    listing = ", ".join(f"{f.relative_to(REPO)} {f.stat().st_size / 2**20:.1f} MiB" for f in reversed(largest))
    assert tree + prepare.DEFAULT_MIB <= room, (
        f"the tree ({tree:.1f} MiB) and .gpu_data at {prepare.DEFAULT_IMAGES} images ({prepare.DEFAULT_MIB} MiB) "
        f"exceed the {room:.0f} MiB that may travel to the GPU machine; largest files: {listing} (committed run "
        "results and gpu_results.json go in packed, as .xz: python -m benchmarks.gan.checkpoint FOLDER packs them)"
    )


def test_check_travel_names_what_fits():
    prepare.check_travel(10.0, 44.6, 44.0, 22_000)  # 54.6 MiB: fits
    with pytest.raises(SystemExit, match=r"come to 74\.6 MiB, over the 63 MiB .*pass --images 16200 \(fits now\)"):
        prepare.check_travel(30.0, 44.6, 44.0, 22_000)  # room 33 MiB − 0.6 MiB of classifier = 16,200 images
    prepare.check_travel(None, 50.0, 49.0, 22_000)  # no git: the folder alone is capped
    with pytest.raises(SystemExit, match=r"holds 57\.0 MiB > 56 MiB"):
        prepare.check_travel(None, 57.0, 56.0, 22_000)


def test_prepare_removes_a_folder_that_would_not_travel(tmp_path, monkeypatch):
    dest = tmp_path / "gpu_data"
    monkeypatch.setattr(prepare, "tree_mib", lambda repo=REPO: 62.99)
    with pytest.raises(SystemExit, match=r"pass --images 0 \(fits now\)"):
        prepare.prepare("fake:40", dest, 40, random_classifier=True, cache=tmp_path / "cache")
    assert not (dest / prepare.DATA_FILE).exists() and not (dest / prepare.META_FILE).exists()
    with pytest.raises(FileNotFoundError, match=r"benchmarks\.gpu prepare"):
        prepare.load_prepared(dest)
    monkeypatch.setattr(prepare, "tree_mib", lambda repo=REPO: 1.0)
    meta = prepare.prepare("fake:40", dest, 40, random_classifier=True, cache=tmp_path / "cache")
    assert meta["tree_mib"] == 1.0 and meta["images"] == prepare.load_prepared(dest)[2]["images"] > 0


def test_results_file_stays_under_what_comes_back(tmp_path):
    """The device tool returns files ≤ 16 MiB: gpu_results.json goes compact, then thins the per-step logs (never the
    evaluations), and says so; small results stay indented and whole."""
    import json

    from benchmarks.gpu.__main__ import write_results

    def results(n: int) -> dict:
        run = {"treatment": "san", "history": {"eval": [{"step": s, "fid": 1.0} for s in range(0, n, 100)],
                                               "san_constants": [{"step": s, "values": {"c1": 1.0}} for s in range(n)],
                                               "loss": [{"step": s, "d": 0.5} for s in range(n)]}}  # fmt: skip
        return {"meta": {"command": "x"}, "quality": {"results": [run, {"status": "no history"}]}}

    path = tmp_path / "gpu_results.json"
    small = results(50)
    write_results(small, path, limit=1 << 20)
    assert json.loads(path.read_text()) == small and "\n" in path.read_text()
    big = results(20_000)
    full = len(json.dumps(big, separators=(",", ":")))
    write_results(big, path, limit=full // 3)
    got = json.loads(path.read_text())
    assert path.stat().st_size <= full // 3 and "\n" not in path.read_text()
    hist = got["quality"]["results"][0]["history"]
    assert hist["eval"] == big["quality"]["results"][0]["history"]["eval"]  # evaluations are never thinned
    every = hist["san_constants"][1]["step"]
    assert every in (4, 8) and len(hist["loss"]) == len(range(0, 20_000, every))
    assert got["meta"]["thinned"] == f"per-step logs san_constants, loss keep every {every}th entry (file size)"
    assert "thinned" not in big["meta"]  # the caller's dict is left as it was
