"""The README's Python examples run as written (docs with runnable examples); extraction in readme_examples.py."""

from __future__ import annotations

import pytest
from readme_examples import BLOCKS, main, run_block


def test_readme_has_examples() -> None:
    assert BLOCKS, "README.md lost its python examples"
    assert sum("san_core" in block for block in BLOCKS) >= 2  # what CI's torch-only step runs


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    run_block(index)


def test_torch_only_runner_refuses_a_venv_with_numpy(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("numpy")  # the test venv has it ([dev] extra): the flag must then refuse to run
    assert main(["--san-core", "--no-numpy"]) == 2
    assert "NumPy is importable here" in capsys.readouterr().err
