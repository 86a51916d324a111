"""`.ci/run` runs the README's test command and stops at its first failure.

The script is run for real (bash) in a copy of the repository's layout where ``bootstrap.sh``, ``.venv/bin/python``
and the interpreter named by ``$PYTHON`` are small stand-ins that record being called: no install happens.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _readme_test_command() -> str:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no bash block in its Quick start"
    lines = block.group(1).splitlines()
    return next(lines[i + 1] for i, line in enumerate(lines) if line.startswith("# the tests"))


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = _readme_test_command()
    assert "pytest" in command and command.startswith("./bootstrap.sh")
    assert command in (ROOT / ".ci" / "run").read_text(), f"{command!r} is not in .ci/run"


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run_ci(tmp_path: Path, bootstrap_rc: int, pytest_rc: int) -> tuple[int, list[str]]:
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    calls = tmp_path / "calls.txt"
    record = f'echo "$(basename "$0") $*" >> {calls}'
    venv_python = f'{record}\ncase "$*" in *pytest*) exit {pytest_rc};; esac\nexit 0'
    _script(tmp_path / "bootstrap.sh", f"{record}\n" + (f"exit {bootstrap_rc}" if bootstrap_rc else ""))
    _script(tmp_path / ".venv" / "bin" / "python", venv_python)
    for tool in ("ruff", "mypy"):
        _script(tmp_path / ".venv" / "bin" / tool, record)
    # the interpreter that makes the torch-only venv: records the call and puts a recording python in that venv
    make_venv = 'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; printf "%s\\n" "#!/usr/bin/env bash" '
    make_venv += f'\'echo "torch-only $*" >> {calls}\' > "$3/bin/python"; chmod +x "$3/bin/python"; fi'
    _script(tmp_path / "fake-python3", f"{record}\n{make_venv}")
    env = {**os.environ, "PYTHON": str(tmp_path / "fake-python3")}
    proc = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True)
    return proc.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_ci_stops_when_bootstrap_fails(tmp_path: Path) -> None:
    rc, calls = _run_ci(tmp_path, bootstrap_rc=3, pytest_rc=0)
    assert rc != 0
    assert calls == ["bootstrap.sh dev,bench,mmagic,basicsr"], calls  # nothing after it ran


def test_ci_stops_when_tests_fail(tmp_path: Path) -> None:
    rc, calls = _run_ci(tmp_path, bootstrap_rc=0, pytest_rc=1)
    assert rc != 0
    assert calls[-1] == "python -m pytest", calls


def test_ci_runs_every_step_when_all_pass(tmp_path: Path) -> None:
    rc, calls = _run_ci(tmp_path, bootstrap_rc=0, pytest_rc=0)
    assert rc == 0, calls
    assert calls[:2] == ["bootstrap.sh dev,bench,mmagic,basicsr", "python -m pytest"], calls
    assert calls[2].startswith("fake-python3 -m venv"), calls
    assert calls[-4:] == [
        "torch-only tests/readme_examples.py --san-core --no-numpy",
        "ruff check .",
        "ruff format --check .",
        "mypy ",
    ], calls
