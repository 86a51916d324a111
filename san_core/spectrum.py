"""Pure functions on tensors: the SAN normalization constants (paper symbols in the docstrings).

Nothing here mutates its inputs (except the optional power-iteration vector ``u`` of
:func:`linear_constant`, which is documented as persistent state).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _dft, _linear

IntOrTuple = Union[int, Sequence[int]]
STRIDE_MODES = ("paper", "exact")
METHODS = ("auto", "matmul", "pruned", "fft")
_EULER_GAMMA = 0.57721566490153286


def _compute_dtype(weight: Tensor, who: str) -> torch.dtype:
    if weight.is_complex() or not weight.is_floating_point():
        raise TypeError(f"{who}: expected a real floating-point weight, got dtype {weight.dtype}")
    if weight.device.type == "meta":
        raise ValueError(f"{who}: weight is a meta tensor (no values); materialize the model first")
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


def _as_tuple(value: IntOrTuple, ndim: int, name: str, who: str) -> tuple[int, ...]:
    out = (int(value),) * ndim if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != ndim or any(v < 1 for v in out):
        raise ValueError(f"{who}: expected {name} to be a positive int or {ndim} positive ints, got {value!r}")
    return out


def compensation_gain(num_kernels: int, ratio: float) -> float:
    """Eq. 9: ``g = H(m·n) / H(⌈m·n·r⌉)`` with ``H`` the harmonic number.

    The expected maximum of ``k`` i.i.d. exponential draws grows like ``H(k)``; sampling a fraction
    ``r`` of the ``m·n`` kernels under-estimates the maximum by ``H(⌈m·n·r⌉)/H(m·n)`` on average.
    ``compensation_gain(64**2, 0.25) ≈ 1.185``.
    """
    if isinstance(num_kernels, bool) or not isinstance(num_kernels, int) or num_kernels < 1:
        raise ValueError(f"compensation_gain: expected num_kernels to be a positive int, got {num_kernels!r}")
    _check_ratio(ratio, "compensation_gain")
    return _harmonic(num_kernels) / _harmonic(subset_size(num_kernels, ratio))


def subset_size(num_kernels: int, ratio: float) -> int:
    """``⌈m·n·r⌉``, the number of kernels evaluated for ``filter_ratio=r`` (at least one)."""
    return max(1, math.ceil(round(num_kernels * ratio, 9)))


def _harmonic(n: int) -> float:
    if n <= 4096:
        return math.fsum(1.0 / j for j in range(1, n + 1))
    inv = 1.0 / n
    return math.log(n) + _EULER_GAMMA + inv / 2 - inv**2 / 12 + inv**4 / 120


def _check_ratio(ratio: float, who: str) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"{who}: expected filter_ratio/ratio in (0, 1], got {ratio!r}")


def tap_groups(kernel_size: Sequence[int], dilation: Sequence[int], stride: Sequence[int]) -> list[_dft.TapGroup]:
    """Split the taps into the ``s^d`` polyphase components ``w_p(u) = w(s·u + p)`` (one group if s = 1).

    Cached (the tensors are shared: do not modify them)."""
    return _tap_groups(tuple(kernel_size), tuple(dilation), tuple(stride))


@functools.lru_cache(maxsize=256)
def _tap_groups(
    kernel_size: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]
) -> list[_dft.TapGroup]:
    offsets = _dft.tap_offsets(kernel_size, dilation)
    strides = torch.tensor(list(stride), dtype=torch.int64)
    if all(s == 1 for s in stride):
        return [(torch.arange(offsets.shape[0]), offsets)]
    groups = []
    for phase in itertools.product(*(range(s) for s in stride)):
        p = torch.tensor(phase, dtype=torch.int64)
        idx = torch.nonzero(((offsets % strides) == p).all(dim=1)).flatten()
        if idx.numel():
            groups.append((idx, (offsets[idx] - p) // strides))
    return groups


def conv_constant(
    weight: Tensor,
    input_size: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    transposed: bool = False,
    stride_mode: str = "paper",
    filter_ratio: float = 1.0,
    gain: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    method: str = "auto",
    max_memory: int = _dft.DEFAULT_MAX_MEMORY,
    stats: Optional[dict] = None,
) -> Tensor:
    """SAN constant ``‖W‖₀,∞ = max_{i,j} ‖F{w_ij}‖_∞`` of a conv layer (Lemma 1), a 0-d tensor.

    Args:
        weight: conv weight, ``(out, in/groups, *k)``; for ``transposed=True`` the
            ``ConvTranspose`` layout ``(in, out/groups, *k)``. Any real float dtype; the constant is
            computed in float32 (float64 for float64 weights), never under autocast, without TF32.
        input_size: the layer's input feature-map size, spatial dims only: ``(L,)``, ``(H, W)`` or
            ``(D, H, W)``. Each kernel ``w_ij`` is zero-padded to it (H to H, W to W); taps beyond
            the map wrap around (circular padding), so kernels larger than the map are exact.
        stride, dilation: the layer's; dilated taps sit at multiples of ``d``.
        groups: the layer's groups (validated against the weight; the value does not depend on it:
            the weight holds exactly the connected (i, j) kernels).
        transposed: a ``ConvTranspose`` layer; its constant is that of its adjoint, computed on the
            output grid ``input_size · stride``.
        stride_mode: ``"paper"`` (default) – ``max|DFT|`` on the full-resolution grid, the paper's
            value and an upper bound for strided layers. ``"exact"`` – the 1-sparse gain of the
            strided operator, ``sqrt(max_ω mean_a |X(ω + 2πa/s)|²) = sqrt(max_ω Σ_p |W_p(ω)|²)``
            over the ``s^d`` polyphase components ``W_p`` on the output grid; the map size must be a
            multiple of the stride.
        filter_ratio: ``r``; when < 1, the max runs over a random subset of ``⌈m·n·r⌉`` kernels
            drawn with ``generator`` and is multiplied by ``gain``.
        gain: ``g``, default :func:`compensation_gain` ``(m·n, r)`` (1 when ``r = 1``).
        method: ``"auto"`` (the fastest exact path, currently ``"pruned"``), ``"matmul"`` (chunked
            matrix DFT of every kernel), ``"pruned"`` (matmul + exact L1 pruning) or ``"fft"``
            (reference, unchunked FFT).
        max_memory: bound in bytes on the transient memory of the matmul methods.
        stats: optional dict receiving ``evaluated``/``total`` kernel counts.
    """
    who = "conv_constant"
    cdtype = _compute_dtype(weight, who)
    ndim = weight.dim() - 2
    if ndim < 1:
        raise ValueError(f"{who}: expected a conv weight (out, in/groups, *kernel), got shape {tuple(weight.shape)}")
    size = _as_tuple(input_size, ndim, "input_size", who) if not isinstance(input_size, int) else None
    if size is None:
        raise ValueError(f"{who}: expected input_size with {ndim} spatial dims, got {input_size!r}")
    stride_t = _as_tuple(stride, ndim, "stride", who)
    dil_t = _as_tuple(dilation, ndim, "dilation", who)
    # (out, in/g, *k) for convs and (in, out/g, *k) for transposed ones: g divides dim 0 either way.
    if not isinstance(groups, int) or groups < 1 or (weight.shape[0] % groups):
        raise ValueError(f"{who}: groups={groups!r} does not divide the weight of shape {tuple(weight.shape)}")
    if stride_mode not in STRIDE_MODES:
        raise ValueError(f"{who}: expected stride_mode in {STRIDE_MODES}, got {stride_mode!r}")
    if method not in METHODS:
        raise ValueError(f"{who}: expected method in {METHODS}, got {method!r}")
    _check_ratio(filter_ratio, who)
    if gain is not None and not gain > 0:
        raise ValueError(f"{who}: expected gain > 0, got {gain!r}")

    grid_full, grid, phases = _grids(size, stride_t, transposed, stride_mode, who)
    num_kernels = weight.shape[0] * weight.shape[1]
    kernels = weight.detach().reshape(num_kernels, -1).to(cdtype)
    if filter_ratio < 1:
        chosen = torch.randperm(num_kernels, generator=generator)[: subset_size(num_kernels, filter_ratio)]
        kernels = kernels[chosen.to(kernels.device)]
    scale = compensation_gain(num_kernels, filter_ratio) if gain is None else float(gain)

    kernel_size = tuple(weight.shape[2:])
    with _dft.exact_matmul(weight.device):
        if method == "fft":
            power = _fft_power(kernels, kernel_size, dil_t, grid_full, phases)
            if stats is not None:
                stats.update(evaluated=kernels.shape[0], total=kernels.shape[0])
        else:
            prune = method in ("auto", "pruned")
            power = _dft.max_power(
                kernels,
                tap_groups(kernel_size, dil_t, phases),
                grid,
                prune=prune,
                max_memory=max_memory,
                stats=stats,
            )
    return power.clamp_min(0).sqrt() * scale


def _grids(
    size: tuple[int, ...], stride: tuple[int, ...], transposed: bool, stride_mode: str, who: str
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(full-resolution grid, grid of the DFT, polyphase factors)`` of a conv (see :func:`conv_constant`)."""
    grid_full = tuple(n * s for n, s in zip(size, stride)) if transposed else size
    if stride_mode != "exact":
        return grid_full, grid_full, (1,) * len(size)
    if any(n % s for n, s in zip(grid_full, stride)):
        raise ValueError(
            f"{who}: stride_mode='exact' needs input_size divisible by the stride, got input_size={size} "
            f"and stride={stride}; use stride_mode='paper' (an upper bound)"
        )
    return grid_full, tuple(n // s for n, s in zip(grid_full, stride)), stride


def conv_geometry(
    kernel_size: Sequence[int],
    input_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    stride_mode: str,
) -> tuple[tuple[int, ...], list[_dft.TapGroup]]:
    """The DFT grid and tap groups :func:`conv_constant` uses for a conv layer (validated inputs)."""
    _, grid, phases = _grids(tuple(input_size), tuple(stride), transposed, stride_mode, "conv_geometry")
    return grid, tap_groups(kernel_size, dilation, phases)


def _fft_power(
    kernels: Tensor, kernel_size: Sequence[int], dilation: Sequence[int], grid: Sequence[int], phases: Sequence[int]
) -> Tensor:
    """Reference: fold the kernels onto the grid, FFT, and average ``|X|²`` over the stride aliases."""
    folded = _dft.fold_onto_grid(kernels, _dft.tap_offsets(kernel_size, dilation), grid)
    dims = tuple(range(1, len(grid) + 1))
    if all(p == 1 for p in phases):
        return torch.fft.rfftn(folded, dim=dims).abs().square().amax()
    power = torch.fft.fftn(folded, dim=dims).abs().square()
    split = [kernels.shape[0]]
    for n, s in zip(grid, phases):
        split += [s, n // s]  # frequency ω = ν + a·(n/s): alias index a first
    alias_dims = tuple(range(1, 2 * len(grid), 2))
    return power.reshape(split).mean(dim=alias_dims).amax()


def official_constant(weight: Tensor, input_size: Sequence[int]) -> Tensor:
    """What the authors' released code (kligvasser/SANGAN ``sparse.py``, ``torch.fft`` port) computes.

    ``norm(fft2(pad(w)), dim=-1).amax()``: the kernel is zero-padded on the right/bottom with
    ``F.pad(w, (0, H - k_h, 0, W - k_w))`` – the amounts of H and W swapped, as released (identical
    on square maps; a negative amount crops a kernel larger than its map) – and the L2 norm is taken
    over the last frequency axis instead of the max modulus. It is therefore ≥ the paper's
    :func:`conv_constant` (typically 1.8–7.3× on real layers) and no Lemma-1 bound. For comparing
    with checkpoints trained with that code only; 2-D convs, no gain, no eps.
    """
    who = "official_constant"
    cdtype = _compute_dtype(weight, who)
    if weight.dim() != 4 or len(tuple(input_size)) != 2:
        raise ValueError(
            f"{who}: expected a 2-D conv weight and input_size (H, W), got weight {tuple(weight.shape)} "
            f"and input_size {tuple(input_size)}"
        )
    height, width = (int(v) for v in input_size)
    padded = F.pad(weight.detach().to(cdtype), (0, height - weight.shape[2], 0, width - weight.shape[3]))
    return torch.linalg.vector_norm(torch.fft.fft2(padded), dim=-1).amax()


def linear_constant(weight: Tensor, *, method: str = "svd", u: Optional[Tensor] = None, n_iter: int = 1) -> Tensor:
    """Top singular value ``σ₁`` of a Linear ``(out, in)`` or Embedding ``(num, dim)`` weight, 0-d.

    ``method="svd"`` (default) is exact: ``sqrt(λ_max)`` of the smaller Gram matrix (``W Wᵀ`` or
    ``Wᵀ W``) in float64, much cheaper than an SVD of a wide matrix. ``method="power"`` runs
    ``n_iter`` power iterations from ``u`` (shape ``(weight.shape[0],)``), updated in place so that
    it persists between calls, as in spectral norm; with ``u=None`` it starts from a normalized
    all-ones vector.
    """
    who = "linear_constant"
    cdtype = _compute_dtype(weight, who)
    if weight.dim() < 2:
        raise ValueError(f"{who}: expected a 2-D weight, got shape {tuple(weight.shape)}")
    mat = weight.detach().reshape(weight.shape[0], -1).to(cdtype)
    with _dft.exact_matmul(weight.device):
        if method == "svd":
            wide = mat.to(torch.float64)
            gram = wide @ wide.t() if wide.shape[0] <= wide.shape[1] else wide.t() @ wide
            return torch.linalg.eigvalsh(gram)[-1].clamp_min(0).sqrt().to(cdtype)
        if method != "power":
            raise ValueError(f"{who}: expected method 'svd' or 'power', got {method!r}")
        if not isinstance(n_iter, int) or n_iter < 1:
            raise ValueError(f"{who}: expected n_iter >= 1, got {n_iter!r}")
        if u is not None and tuple(u.shape) != (mat.shape[0],):
            raise ValueError(f"{who}: expected u of shape ({mat.shape[0]},), got {tuple(u.shape)}")
        # the same iteration as the sync-free path's; a scratch vector when no persistent u is given
        return _linear.power_sigma(mat, cdtype, u if u is not None else mat.new_ones(mat.shape[0]), n_iter)
