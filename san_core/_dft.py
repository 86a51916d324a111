"""Fast exact paths for the largest DFT magnitude of many small kernels on a circular grid.

A kernel is a set of ``T`` taps at integer positions ``offsets`` (``(T, d)``) on a grid of size
``grid`` (``(N_1, …, N_d)``).  Its DFT on that grid is ``X(ω) = Σ_t w_t exp(-2πi Σ_d ω_d t_d / N_d)``;
because the phase is periodic in ``t``, taps that fall outside the grid wrap around, which is exactly
what zero-padding a kernel to a *smaller* circular map means (``fft2(w, s=…)`` would crop it instead).

The taps may be split into groups (the stride polyphase components); per kernel we compute::

    P = max_ω  Σ_groups | Σ_{t ∈ group} w_t exp(-2πi Σ_d ω_d t_d / N_d) |²

With one group, ``sqrt(P)`` is ``max_ω |X(ω)|`` (Lemma 1).  The DFT is evaluated as a real matrix
product ``K(kernels, taps) @ E(taps, 2·F)`` (``[cos | sin]`` of the phases) over the half spectrum
(``|X(-ω)| = |X(ω)|`` for real kernels; a sum over groups keeps that symmetry), chunked over kernels
and frequencies so that transient memory stays under ``max_memory`` bytes.  With ``prune=True``,
kernels whose upper bound (L1, or a coarse-grid sampling bound: :mod:`san_core._pruning`) cannot beat
the running maximum are skipped: the result is unchanged, only cheaper.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

MiB = 1 << 20
DEFAULT_MAX_MEMORY = 64 * MiB
#: Total bytes the cache of DFT matrices ``E`` may hold (least recently used entries are dropped).
CACHE_LIMIT = 128 * MiB

TapGroup = tuple[Tensor, Tensor]  # (tap indices (Tp,), tap positions (Tp, d)), both int64 on CPU

_cache: OrderedDict[tuple, Tensor] = OrderedDict()
_cache_bytes = 0


def clear_dft_cache() -> None:
    """Drop every cached DFT matrix (they are rebuilt on demand)."""
    global _cache_bytes
    _cache.clear()
    _cache_bytes = 0


@contextlib.contextmanager
def exact_matmul(device: torch.device) -> Iterator[None]:
    """Full-precision float32 matmuls (no TF32, no bf16 downcast) and no autocast, restored on exit.

    Uses the per-backend ``fp32_precision`` settings where torch has them (≥ 2.9) and the legacy
    ``set_float32_matmul_precision`` otherwise; mixing the two APIs makes torch's getter raise.
    """
    mkldnn_matmul = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    new_api: list[Any] = [b for b in (torch.backends.cuda.matmul, mkldnn_matmul) if hasattr(b, "fp32_precision")]
    saved_new = [(b, b.fp32_precision) for b in new_api]
    saved_legacy = None if new_api else torch.get_float32_matmul_precision()
    try:
        if new_api:
            for backend in new_api:
                backend.fp32_precision = "ieee"
        else:
            torch.set_float32_matmul_precision("highest")
        try:
            no_autocast: contextlib.AbstractContextManager = torch.autocast(device.type, enabled=False)
        except RuntimeError:  # a device type without autocast support
            no_autocast = contextlib.nullcontext()
        with no_autocast:
            yield
    finally:
        for backend, value in saved_new:
            backend.fp32_precision = value
        if saved_legacy is not None:
            torch.set_float32_matmul_precision(saved_legacy)


def tap_offsets(kernel_size: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """Integer positions ``(T, d)`` of a kernel's taps, in the row-major order of ``weight.reshape(-1)``."""
    grids = [range(0, k * d, d) for k, d in zip(kernel_size, dilation)]
    return torch.tensor(list(itertools.product(*grids)), dtype=torch.int64).reshape(-1, len(kernel_size))


def half_spectrum_shape(grid: Sequence[int]) -> tuple[int, ...]:
    """Frequencies kept: all of every dimension but the last, and ``0..N_d//2`` of the last."""
    return (*grid[:-1], grid[-1] // 2 + 1)


def _frequencies(grid: Sequence[int], start: int, stop: int, device: torch.device) -> Tensor:
    """Rows ``start..stop`` of the row-major list of half-spectrum frequency vectors, ``(stop-start, d)``."""
    idx = torch.arange(start, stop, device=device, dtype=torch.int64)
    cols = []
    for size in reversed(half_spectrum_shape(grid)):
        cols.append(idx % size)
        idx = idx // size
    return torch.stack(cols[::-1], dim=1)


def phase_matrix(
    offsets: Tensor, grid: Sequence[int], start: int, stop: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``E = [cos φ | sin φ]`` with ``φ[t, ω] = 2π Σ_d (t_d ω_d mod N_d) / N_d``, shape ``(T, 2·(stop-start))``.

    The phase is reduced modulo the grid in integers before any rounding, so it is exact for any
    kernel extent, and evaluated in float64 before the cast to ``dtype``.
    """
    key = (tuple(offsets.flatten().tolist()), tuple(offsets.shape), tuple(grid), start, stop, dtype, device)
    hit = _cache.get(key)
    if hit is not None:
        _cache.move_to_end(key)
        return hit
    freqs = _frequencies(grid, start, stop, device)
    offs = offsets.to(device)
    turns = torch.zeros(offs.shape[0], stop - start, dtype=torch.float64, device=device)
    for dim, size in enumerate(grid):
        turns += ((offs[:, dim, None] * freqs[None, :, dim]) % size).to(torch.float64) / size
    angle = turns.mul_(2 * math.pi)
    mat = torch.cat([angle.cos(), angle.sin()], dim=1).to(dtype)
    _remember(key, mat)
    return mat


def _remember(key: tuple, mat: Tensor) -> None:
    global _cache_bytes
    size = mat.numel() * mat.element_size()
    if size > CACHE_LIMIT // 4:
        return
    _cache[key] = mat
    _cache_bytes += size
    while _cache_bytes > CACHE_LIMIT:
        _, old = _cache.popitem(last=False)
        _cache_bytes -= old.numel() * old.element_size()


def _plan(num_kernels: int, num_taps: int, num_freqs: int, itemsize: int, max_memory: int) -> tuple[int, int]:
    """Chunk sizes ``(kernels, frequencies)`` so that E-chunk + products stay under ``max_memory``.

    Memory of one step: ``E`` is ``T × 2F_c``, the product ``K_c × 2F_c`` and the accumulator
    ``K_c × F_c`` (all of ``itemsize`` bytes).
    """
    budget = max(max_memory // itemsize, 1)
    if (2 * num_taps + 3 * num_kernels) * num_freqs <= budget:
        return num_kernels, num_freqs
    freq_chunk = num_freqs if 4 * num_taps * num_freqs <= budget else max(budget // (4 * num_taps), 1)
    kernel_chunk = max((budget - 2 * num_taps * freq_chunk) // (3 * freq_chunk), 1)
    return min(kernel_chunk, num_kernels), freq_chunk


def _block_power(kernels: Tensor, groups: Sequence[TapGroup], grid: Sequence[int], freq_chunk: int) -> Tensor:
    """Per-kernel ``max_ω Σ_groups |DFT|²`` for one block of kernels, ``(K_c,)``."""
    num_freqs = math.prod(half_spectrum_shape(grid))
    single = len(groups) == 1
    best = torch.full((kernels.shape[0],), -math.inf, dtype=kernels.dtype, device=kernels.device)
    for start in range(0, num_freqs, freq_chunk):
        stop = min(start + freq_chunk, num_freqs)
        n = stop - start
        acc: Tensor | None = None
        for idx, offs in groups:
            mat = phase_matrix(offs, grid, start, stop, kernels.dtype, kernels.device)
            taps = kernels if single else kernels[:, idx.to(kernels.device)]
            prod = (taps @ mat).square_()
            power = prod[:, :n].add_(prod[:, n:])
            acc = power if acc is None else acc.add_(power)
        assert acc is not None
        best = torch.maximum(best, acc.amax(dim=1))
    return best


def max_power(
    kernels: Tensor,
    groups: Sequence[TapGroup],
    grid: Sequence[int],
    *,
    prune: bool,
    max_memory: int = DEFAULT_MAX_MEMORY,
    stats: dict | None = None,
) -> Tensor:
    """``max`` over kernels (rows of ``kernels``, ``(K, T)``) and frequencies of ``Σ_groups |DFT|²``.

    ``stats``, if given, receives ``evaluated`` (kernels whose spectrum was computed) and ``total``.
    """
    num_kernels, num_taps = kernels.shape
    num_freqs = math.prod(half_spectrum_shape(grid))
    kernel_chunk, freq_chunk = _plan(num_kernels, num_taps, num_freqs, kernels.element_size(), max_memory)
    if not prune:
        best = torch.stack(
            [
                _block_power(kernels[i : i + kernel_chunk], groups, grid, freq_chunk).amax()
                for i in range(0, num_kernels, kernel_chunk)
            ]
        ).amax()
        if stats is not None:
            stats.update(evaluated=num_kernels, total=num_kernels)
        return best

    from ._pruning import pruned_max_power  # it builds on this module

    return pruned_max_power(kernels, groups, grid, kernel_chunk, freq_chunk, stats)


def fold_onto_grid(kernels: Tensor, offsets: Tensor, grid: Sequence[int]) -> Tensor:
    """Zero-pad each kernel to the circular grid, wrapping taps modulo ``grid``: ``(K, *grid)``."""
    strides = [math.prod(grid[d + 1 :]) for d in range(len(grid))]
    wrapped = offsets % torch.tensor(list(grid), dtype=torch.int64)
    flat = (wrapped * torch.tensor(strides, dtype=torch.int64)).sum(dim=1).to(kernels.device)
    out = torch.zeros(kernels.shape[0], math.prod(grid), dtype=kernels.dtype, device=kernels.device)
    out.index_add_(1, flat, kernels)
    return out.reshape(kernels.shape[0], *grid)
