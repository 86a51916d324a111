"""Shared pytest setup: opt-in markers (``slow``, ``gpu``) and fixtures restoring global torch state."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: opt in with --run-slow")
    skip_gpu = pytest.mark.skip(reason="gpu: no CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def restore_matmul_precision():
    """Let a test change the global float32 matmul precision; put it back afterwards."""
    previous = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(previous)
