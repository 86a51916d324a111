"""Without MMEngine: ``python -m san_mmagic.train --help`` prints help, use of ``san_mmagic`` names the tested install.

Runs in a subprocess that hides ``mmengine`` (``sys.modules['mmengine'] = None``), so it needs neither
the [mmagic] extra nor its absence.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
HIDE = "import sys; sys.modules['mmengine'] = None; "


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE + code, *args], capture_output=True, text=True, timeout=120)


def test_train_help_works_without_mmengine() -> None:
    run = _python(
        "import runpy; sys.argv[0] = 'x'; runpy.run_module('san_mmagic.train', run_name='__main__')", "--help"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: python -m san_mmagic.train") and "--no-val" in run.stdout
    assert "Traceback" not in run.stderr


def test_train_without_mmengine_exits_2_with_the_readme_command() -> None:
    run = _python("import runpy; sys.argv[0] = 'x'; runpy.run_module('san_mmagic.train', run_name='__main__')", "a.py")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m san_mmagic.train: error: san_mmagic needs MMEngine")
    command = re.search(r"install the tested stack from this repository's root with: (.*?)   ", lines[0])
    assert command is not None and command.group(1) in README.read_text()  # the README's tested command, verbatim
    assert "torch==" in command.group(1) and "torchvision==" in command.group(1)


def test_using_san_mmagic_without_mmengine_raises_with_the_command() -> None:
    code = (
        "import san_mmagic\n"
        "try:\n    san_mmagic.SANHook\nexcept ImportError as e:\n    print(e)\n"
        "try:\n    from san_mmagic import SANHook\nexcept ImportError as e:\n    print('from:', e)\n"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.strip().splitlines()
    assert 'pip install -e ".[mmagic]" torch==' in first and second.startswith("from: san_mmagic needs MMEngine")
