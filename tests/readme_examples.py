"""The README's Python examples: extracted here (``tests/test_readme.py`` runs them all), and runnable alone.

``python tests/readme_examples.py --san-core --no-numpy`` runs the blocks that use ``san_core`` and fails
if NumPy is importable: CI runs it in a venv with only torch and ``pip install -e . --no-deps`` (the
README's "your own environment" path), so the examples cannot lean on a package san_core does not need.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def run_block(index: int) -> None:
    """Execute README python block ``index`` as a script of its own."""
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/readme_examples.py", description=__doc__.splitlines()[0])
    parser.add_argument("--san-core", action="store_true", help="only the blocks that import san_core")
    parser.add_argument("--no-numpy", action="store_true", help="fail if NumPy is importable (a torch-only venv)")
    args = parser.parse_args(argv)
    if args.no_numpy and importlib.util.find_spec("numpy") is not None:
        print(
            "readme_examples: error: --no-numpy: NumPy is importable here; use a venv with torch only", file=sys.stderr
        )
        return 2
    chosen = [i for i, block in enumerate(BLOCKS) if not args.san_core or "san_core" in block]
    if not chosen:
        print("readme_examples: error: README.md has no matching python block", file=sys.stderr)
        return 2
    for index in chosen:
        try:
            run_block(index)
        except Exception:
            traceback.print_exc()
            print(f"readme_examples: README python block {index} failed", file=sys.stderr)
            return 1
        print(f"readme_examples: README python block {index} ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
