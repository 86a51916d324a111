"""``san-inspect`` as a user runs it: from the folder holding their critic module, with its own name in messages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from san_core.inspect import program_name

SCRIPT = Path(sys.executable).parent / "san-inspect"
CRITIC = textwrap.dedent(
    """
    from torch import nn


    class Critic(nn.Sequential):
        def __init__(self, ch=4):
            super().__init__(nn.Conv2d(3, ch, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(ch * 8 * 8, 1))
    """
)
needs_script = pytest.mark.skipif(not SCRIPT.is_file(), reason=f"console script not installed at {SCRIPT}")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "mycritic.py").write_text(CRITIC)
    env = {"PATH": str(SCRIPT.parent), "OMP_NUM_THREADS": "1"}  # no PYTHONPATH: only the current folder helps
    return subprocess.run([str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


@needs_script
def test_critic_module_in_the_current_folder(tmp_path: Path) -> None:
    run = _run(tmp_path, "--critic", "mycritic:Critic", "--random-input", "2,3,8,8", "--max-batches", "1")
    assert run.returncode == 0, run.stderr
    assert "| 0 | Conv2d | 8×8 |" in run.stdout


@needs_script
def test_usage_and_errors_use_the_invoked_name(tmp_path: Path) -> None:
    run = _run(tmp_path, "--random-input", "2,3,8,8")  # --critic missing: argparse's usage error
    assert run.returncode == 2 and run.stderr.startswith("usage: san-inspect ")
    assert "san-inspect: error: the following arguments are required: --critic" in run.stderr
    run = _run(tmp_path, "--critic", "nocritic:Critic", "--random-input", "2,3,8,8")
    assert run.returncode == 2 and run.stderr.startswith(
        "san-inspect: error: --critic: cannot import module 'nocritic'"
    )
    assert len(run.stderr.strip().splitlines()) == 1


def test_program_name() -> None:
    assert program_name("/venv/bin/san-inspect") == "san-inspect"
    assert program_name("C:\\venv\\Scripts\\san-inspect.exe".replace("\\", "/")) == "san-inspect"
    assert program_name("/repo/san_core/inspect.py") == "python -m san_core.inspect"
    assert program_name("-c") == "python -m san_core.inspect"
