"""Committed plots are saved as palette PNGs (``benchmarks._figures``): far smaller, the same picture, and never
lost when the quantization cannot run."""

from __future__ import annotations

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._figures import COLOURS, quantize_png, save_png  # noqa: E402


def _figure():
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.linspace(0, 6000, 31)
    for k in range(9):  # nine anti-aliased curves with shaded bands: thousands of colours
        y = 40 * np.exp(-x / (1500 + 300 * k)) + k
        ax.plot(x, y, marker="o", label=f"treatment {k}")
        ax.fill_between(x, y - 2, y + 2, alpha=0.2)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return fig


def test_save_png_writes_a_palette_png_that_shows_the_same_plot(tmp_path):
    fig = _figure()
    plain, small = tmp_path / "plain.png", tmp_path / "small.png"
    fig.savefig(plain, dpi=100)
    assert save_png(fig, small, dpi=100) == small
    plt.close(fig)
    with Image.open(plain) as a, Image.open(small) as b:
        assert b.mode == "P" and a.size == b.size
        assert len(a.convert("RGB").getcolors(1 << 24)) > COLOURS  # the plain plot needs more than a palette
        assert len(b.convert("RGB").getcolors(1 << 24)) <= COLOURS
        ref, got = (np.asarray(i.convert("RGB"), dtype=np.int16) for i in (a, b))
    diff = np.abs(ref - got)
    assert diff.mean() < 1.5 and np.mean(diff.max(axis=2) > 32) < 0.01, (diff.mean(), np.mean(diff.max(axis=2) > 32))
    assert small.stat().st_size < 0.6 * plain.stat().st_size


def test_quantize_leaves_the_file_when_it_cannot_run(tmp_path, monkeypatch):
    fig = _figure()
    path = tmp_path / "plot.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    before = path.read_bytes()
    monkeypatch.setitem(sys.modules, "PIL", None)  # Pillow not importable: the plain PNG stays
    assert quantize_png(path) is False and path.read_bytes() == before
    monkeypatch.undo()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert quantize_png(broken) is False and broken.read_bytes() == b"not a png"
    assert quantize_png(path) is True and path.read_bytes() != before
    again = path.read_bytes()
    assert quantize_png(path) is False and path.read_bytes() == again  # already a palette PNG: left as it is
