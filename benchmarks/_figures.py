"""Figures as small PNGs: every committed plot goes through :func:`save_png`.

The repository travels to the GPU machine together with the evidence run's data under a 64 MiB cap, and the plots
were a third of the committed tree. A matplotlib line plot at 100 dpi holds a few thousand colours (anti-aliasing);
quantized to a 256-colour palette (median cut, no dithering) it looks the same at about a third of the bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .gan.checkpoint import atomic_write

COLOURS = 256


def quantize_png(path: Path) -> bool:
    """Rewrite the PNG at ``path`` with a palette of at most :data:`COLOURS` colours (transparency flattened onto
    white); returns whether it did. Left as it is where it is already a palette PNG, where Pillow cannot be imported
    or where the file cannot be read as an image: the plot is what matters, its size only helps."""
    try:
        from PIL import Image  # matplotlib's own dependency: present wherever the plot was drawn

        with Image.open(path) as image:
            if image.mode == "P":  # already a palette PNG (quantized before): a second pass would only reorder it
                return False
            rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        palette = flat.convert("RGB").quantize(
            colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        data = io.BytesIO()
        palette.save(data, format="PNG", optimize=True)
    except Exception:  # a size optimisation must never lose a figure
        return False
    atomic_write(path, lambda f: f.write(data.getvalue()))
    return True


def save_png(figure: Any, path: Path, **savefig: Any) -> Path:
    """``figure.savefig(path, **savefig)``, then :func:`quantize_png`; returns ``path``."""
    figure.savefig(path, **savefig)
    quantize_png(Path(path))
    return Path(path)


if __name__ == "__main__":  # python -m benchmarks._figures FOLDER...: quantize every PNG under them (in place)
    import sys

    for folder in sys.argv[1:] or ["benchmarks/results"]:
        for png in sorted(Path(folder).rglob("*.png")):
            print(png, "quantized" if quantize_png(png) else "left as it is")
