"""Shared pytest setup: one torch thread, opt-in markers (``slow``, ``gpu``), fixtures restoring global torch state."""

from __future__ import annotations

import pytest
import torch

pytest.register_assert_rewrite("_san_models")  # its assert helpers report values like test modules do


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread: the tests' tensors are tiny, so more threads only add contention (2-core CI)."""
    torch.set_num_threads(1)


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


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts with one intra-op thread and leaves the count as it found it (code under test, e.g. a
    benchmark's ``--threads``, may change it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def restore_matmul_precision():
    """Let a test change the global float32 matmul precision; put it back afterwards."""
    previous = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(previous)
