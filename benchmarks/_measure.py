"""Timing, peak-memory and environment helpers for the benchmarks (CPU and CUDA)."""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch.profiler import ProfilerActivity, profile

MiB = 1 << 20
T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(
    fn: Callable[[], object], device: torch.device, repeats: int, budget_s: float, warmed_s: float | None = None
) -> tuple[float, int]:
    """Median wall time in ms of ``fn`` over ``repeats`` calls after one warm-up call.

    ``warmed_s``: the caller has just run ``fn`` (e.g. to measure its memory) and it took that
    long; that run is the warm-up. When the warm-up shows that ``repeats`` calls would exceed
    ``budget_s`` seconds, fewer are made (at least one); the number actually made is returned.
    """
    if warmed_s is None:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        warmed_s = time.perf_counter() - start
    first = warmed_s
    n = repeats if first * repeats <= budget_s else max(1, int(budget_s / max(first, 1e-9)))
    times = []
    for _ in range(n):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), n


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Silence the C++ profiler's own start/stop lines on file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_extra_mib(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """``fn()`` and the peak memory allocated during it above what was allocated before it, in MiB.

    (:func:`timed_peak` also returns the wall time of the call, which includes profiler overhead.)

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus ``memory_allocated`` before.
    CPU: the profiler's ``[memory]`` events (one per allocation, ``+bytes``, and per free, ``-bytes``)
    of the run, in time order; the peak of their running sum (frees of older tensors can only lower it).
    """
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        sync(device)
        return result, (torch.cuda.max_memory_allocated(device) - before) / MiB
    with _quiet_stderr_fd(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events = [e for e in events if e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    running = itertools.accumulate(e.nbytes() for e in events)
    return result, (max(0, *running) / MiB if events else 0.0)


def timed_peak(fn: Callable[[], T], device: torch.device) -> tuple[T, float, float]:
    """``(fn(), peak extra MiB, seconds)`` of one call (see :func:`peak_extra_mib`)."""
    start = time.perf_counter()
    result, mib = peak_extra_mib(fn, device)
    return result, mib, time.perf_counter() - start


def check_memory_probe(device: torch.device) -> float:
    """Measure ``torch.empty(100 MiB)`` (plus a transient 50 MiB); must read ≈ 100 MiB (150 at peak)."""

    def alloc() -> torch.Tensor:
        keep = torch.empty(100 * MiB, dtype=torch.uint8, device=device)
        tmp = torch.empty(50 * MiB, dtype=torch.uint8, device=device)
        del tmp
        return keep

    single = peak_extra_mib(lambda: torch.empty(100 * MiB, dtype=torch.uint8, device=device), device)[1]
    both = peak_extra_mib(alloc, device)[1]
    if abs(single - 100) > 1 or abs(both - 150) > 1:
        raise RuntimeError(f"memory probe is off: 100 MiB read {single:.1f}, 100+50 MiB read {both:.1f}")
    return single


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


def git_commit() -> str:
    """``git rev-parse --short HEAD``, plus ``-dirty`` when ``git status --porcelain`` lists anything."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        return commit + ("-dirty" if git("status", "--porcelain").strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages (other processes skew timings on a shared machine)."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


class Progress:
    """tqdm when installed, else one line per step on stderr."""

    def __init__(self, total: int) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar = None
        else:
            self._bar = tqdm(total=total, file=sys.stderr, dynamic_ncols=True)
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def step(self, text: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_description(text)
            self._bar.update(1)
        else:
            elapsed = time.perf_counter() - self.start
            print(f"[{self.done}/{self.total} {elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
