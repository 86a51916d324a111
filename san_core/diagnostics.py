"""Diagnostics on tensors: a conv layer's exact top singular value, spectral norm's estimate.

Pure functions (nothing is mutated except the documented power-iteration vector ``u``), torch only,
float64 when the weight is float64. Symbols follow the paper: a conv ``W`` with ``m`` output and ``n``
input channels and kernels ``w_ij``; ``‖W‖₀,∞`` is the SAN constant (:func:`san_core.conv_constant`).

Ordering of the three constants of one circular conv layer (proved in the docstrings below):

    ‖W‖₀,∞ (exact stride mode)  ≤  σ₁(W)  ≤  √(m·n) · ‖W‖₀,∞
    σ₁(W_reshaped) (SN)         ≤  σ₁(W)  ≤  √T · σ₁(W_reshaped)      (T = taps per kernel)

the SN inequality holding when no two taps of a polyphase component alias on the map (kernel extent
≤ map size per dimension, the usual case).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# the same argument checks as the SAN constants: one dtype rule and one error wording for both modules
from .spectrum import IntOrTuple, _as_tuple, _compute_dtype

MiB = 1 << 20


def _conv_args(weight: Tensor, input_size: Sequence[int], stride: IntOrTuple, dilation: IntOrTuple, who: str):
    ndim = weight.dim() - 2
    if ndim < 1:
        raise ValueError(f"{who}: expected a conv weight (out, in/groups, *kernel), got shape {tuple(weight.shape)}")
    if isinstance(input_size, int) or len(tuple(input_size)) != ndim:
        raise ValueError(f"{who}: expected input_size with {ndim} spatial dims, got {input_size!r}")
    return (
        ndim,
        _as_tuple(input_size, ndim, "input_size", who),
        _as_tuple(stride, ndim, "stride", who),
        _as_tuple(dilation, ndim, "dilation", who),
    )


def _taps(kernel_size: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """``(T, d)`` int64 tap positions ``index · dilation`` in the weight's flattening order."""
    axes = [torch.arange(k, dtype=torch.int64) * d for k, d in zip(kernel_size, dilation)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(axes))


@dataclass
class _Plan:
    """Sedghi matrices of one conv: tap phases on the polyphase grid and the half-spectrum frequencies."""

    kernels: Tensor  # (m, n_g, T) real
    phase_of_tap: list[int]
    coarse: Tensor  # (T, d) tap positions on the polyphase grid
    freqs: Tensor  # (F, d) frequency / grid size, half spectrum
    groups: int
    phases: int
    cdtype: torch.dtype

    def matrices(self, start: int = 0, stop: Optional[int] = None) -> Tensor:
        """``P(ω)`` for frequencies ``[start, stop)``: ``(F_c, groups, m/groups, n_g·s^d)`` complex."""
        rdtype = self.kernels.dtype
        angles = -2 * math.pi * (self.freqs[start:stop] @ self.coarse.to(rdtype).T)  # (F_c, T)
        e = torch.polar(torch.ones_like(angles), angles).to(self.kernels.device)
        m, n_g = self.kernels.shape[:2]
        mats = torch.zeros(e.shape[0], m, n_g, self.phases, dtype=self.cdtype, device=self.kernels.device)
        for t, phase in enumerate(self.phase_of_tap):  # element-wise products: no matmul, so no TF32
            mats[..., phase] += self.kernels[None, :, :, t] * e[:, t, None, None]
        return mats.reshape(e.shape[0], self.groups, m // self.groups, n_g * self.phases)


def _plan(
    weight: Tensor,
    input_size: Sequence[int],
    stride: IntOrTuple,
    dilation: IntOrTuple,
    groups: int,
    transposed: bool,
    who: str,
) -> _Plan:
    rdtype = _compute_dtype(weight, who)
    ndim, size, stride_t, dil_t = _conv_args(weight, input_size, stride, dilation, who)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{who}: groups={groups!r} does not divide the weight of shape {tuple(weight.shape)}")
    grid_full = tuple(n * s for n, s in zip(size, stride_t)) if transposed else size
    if any(n % s for n, s in zip(grid_full, stride_t)):
        raise ValueError(
            f"{who}: a strided circular conv is a polyphase conv only when the map divides by the stride; "
            f"got map {grid_full} and stride {stride_t}"
        )
    grid = tuple(n // s for n, s in zip(grid_full, stride_t))
    taps = _taps(weight.shape[2:], dil_t)
    strides = torch.tensor(stride_t, dtype=torch.int64)
    phase_of_tap = torch.zeros(taps.shape[0], dtype=torch.int64)
    for p, s in zip((taps % strides).unbind(1), stride_t):
        phase_of_tap = phase_of_tap * s + p
    axes = [torch.arange(k, dtype=rdtype) for k in grid[:-1]] + [torch.arange(grid[-1] // 2 + 1, dtype=rdtype)]
    freqs = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, ndim)
    return _Plan(
        kernels=weight.detach().to(rdtype).reshape(weight.shape[0], weight.shape[1], -1),
        phase_of_tap=phase_of_tap.tolist(),
        coarse=taps // strides,
        freqs=freqs / torch.tensor(grid, dtype=rdtype),
        groups=groups,
        phases=math.prod(stride_t),
        cdtype=torch.complex128 if rdtype == torch.float64 else torch.complex64,
    )


def conv_frequency_matrices(
    weight: Tensor,
    input_size: Sequence[int],
    stride: IntOrTuple = 1,
    *,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    transposed: bool = False,
) -> Tensor:
    """All Sedghi matrices ``P(ω)`` of the half spectrum at once, ``(F, groups, m/groups, n_g·s^d)`` complex.

    The conv's singular values are those of these matrices (plus their conjugates at ``-ω``); see
    :func:`conv_singular_value` for the definition and the arguments. Memory: ``F·m·n_g·s^d`` complex
    numbers, unchunked: for training-time trackers (batched power iteration) on small layers.
    """
    return _plan(weight, input_size, stride, dilation, groups, transposed, "conv_frequency_matrices").matrices()


def conv_singular_value(
    weight: Tensor,
    input_size: Sequence[int],
    stride: IntOrTuple = 1,
    *,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    transposed: bool = False,
    max_memory: int = 64 * MiB,
) -> Tensor:
    """Exact top singular value ``σ₁`` of a multi-channel conv with circular padding, a 0-d tensor.

    Sedghi, Gupta & Long (2018): the operator is block-diagonalized by the DFT, so its singular values
    are those of the ``m × n`` matrices ``P(ω)_ij = Σ_t w_ij[t] e^{-2πi⟨ω, t⟩/N}`` over all frequencies
    ``ω`` of the ``N = input_size`` grid; ``σ₁ = max_ω ‖P(ω)‖₂``. Taps beyond the map wrap around.

    Stride ``s`` (map divisible by ``s``): the strided operator is a stride-1 conv on the ``N/s`` grid
    from the ``s^d`` polyphase components ``x_p[u] = x[s·u + p]``, i.e. ``P(ω)`` becomes
    ``m × (n·s^d)``. Groups: the operator is block diagonal, ``σ₁`` the largest over groups.
    ``transposed=True`` takes a ``ConvTranspose`` weight ``(in, out/groups, *k)``: the layer is the
    adjoint of that conv on its output grid ``input_size · stride``, same singular values.

    The real-weight symmetry ``P(-ω) = conj P(ω)`` halves the frequencies; they are processed in
    chunks so that the complex ``P`` of a chunk takes at most ``max_memory`` bytes (one temporary of
    the same size and the SVD's workspace come on top); ``‖P‖₂`` by ``torch.linalg.matrix_norm(ord=2)``.
    Computed in float64 for float64 weights, float32 otherwise. On CPU, batched SVDs are much faster
    with ``torch.set_num_threads(1)`` when the cores are shared with other processes.
    """
    who = "conv_singular_value"
    if isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory < 1024:
        raise ValueError(f"{who}: expected max_memory to be an int number of bytes >= 1024, got {max_memory!r}")
    plan = _plan(weight, input_size, stride, dilation, groups, transposed, who)
    m, n_g = plan.kernels.shape[:2]
    per_freq = m * n_g * plan.phases * (16 if plan.cdtype == torch.complex128 else 8)
    chunk = max(1, max_memory // per_freq)
    best = torch.zeros((), dtype=plan.kernels.dtype, device=weight.device)
    for start in range(0, plan.freqs.shape[0], chunk):
        best = torch.maximum(best, torch.linalg.matrix_norm(plan.matrices(start, start + chunk), ord=2).amax())
    return best


def sn_estimate(
    weight: Tensor,
    n_iter: Optional[int] = None,
    *,
    dim: int = 0,
    u: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """The ``σ₁`` spectral norm estimates: of the reshaped matrix ``W_mat = W.movedim(dim, 0).reshape(·, -1)``.

    ``n_iter=None`` (default): exact ``‖W_mat‖₂`` (what SN converges to with a persistent ``u``).
    ``n_iter=k``: ``k`` power iterations as ``torch.nn.utils.spectral_norm`` does, from ``u``
    (updated in place, shape ``(W_mat.shape[0],)``) or from a normalized normal draw (``generator``).
    ``dim``: 0 for Conv/Linear, 1 for ConvTranspose (torch's convention).

    For a conv, ``σ₁(W_mat) ≤ σ₁(W) ≤ √T·σ₁(W_mat)`` (see :func:`conv_singular_value`; no aliasing):
    ``P(ω) = W_mat B(ω)`` with ``‖B(ω)‖ ≤ √T``, and ``mean_ω P(ω)P(ω)ᴴ = W_mat W_matᴴ``.
    """
    who = "sn_estimate"
    rdtype = _compute_dtype(weight, who)
    if weight.dim() < 2:
        raise ValueError(f"{who}: expected a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    if not -weight.dim() <= dim < weight.dim():
        raise ValueError(f"{who}: dim={dim} out of range for shape {tuple(weight.shape)}")
    mat = weight.detach().to(rdtype).movedim(dim, 0)
    mat = mat.reshape(mat.shape[0], -1)
    if n_iter is None:
        return torch.linalg.matrix_norm(mat, ord=2)
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"{who}: expected n_iter None or an int >= 1, got {n_iter!r}")
    if u is not None and tuple(u.shape) != (mat.shape[0],):
        raise ValueError(f"{who}: expected u of shape ({mat.shape[0]},), got {tuple(u.shape)}")
    start = u.detach() if u is not None else torch.randn(mat.shape[0], generator=generator, dtype=rdtype)
    vec = F.normalize(start.to(mat), dim=0)
    v = vec.new_zeros(mat.shape[1])
    for _ in range(n_iter):
        v = F.normalize(mat.t() @ vec, dim=0)
        vec = F.normalize(mat @ v, dim=0)
    if u is not None:
        u.copy_(vec.to(u.dtype))
    return torch.dot(vec, mat @ v)


def kernel_fourier_maxima(
    weight: Tensor,
    input_size: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
    transposed: bool = False,
    max_memory: int = 64 * MiB,
) -> Tensor:
    """``‖F{w_ij}‖_∞`` of every kernel on the layer's full-resolution grid, shape ``weight.shape[:2]``.

    Their maximum is the SAN constant ``‖W‖₀,∞`` (Lemma 1, ``stride_mode="paper"``); the whole matrix
    is what a random ``filter_ratio`` subset samples from (Eq. 9). Kernels are folded onto the grid
    (taps beyond the map wrap) and FFT'd in chunks of at most ``max_memory`` bytes of spectrum.
    """
    who = "kernel_fourier_maxima"
    rdtype = _compute_dtype(weight, who)
    ndim, size, stride_t, dil_t = _conv_args(weight, input_size, stride, dilation, who)
    grid = tuple(n * s for n, s in zip(size, stride_t)) if transposed else size
    taps = _taps(weight.shape[2:], dil_t) % torch.tensor(grid, dtype=torch.int64)
    flat_pos = torch.zeros(taps.shape[0], dtype=torch.int64)
    for axis, n in enumerate(grid):
        flat_pos = flat_pos * n + taps[:, axis]
    kernels = weight.detach().to(rdtype).reshape(-1, taps.shape[0])
    spectrum = math.prod(grid[:-1]) * (grid[-1] // 2 + 1) * (16 if rdtype == torch.float64 else 8)
    chunk = max(1, max_memory // (spectrum + math.prod(grid) * kernels.element_size()))
    out = []
    for part in kernels.split(chunk):
        folded = part.new_zeros(part.shape[0], math.prod(grid)).index_add_(1, flat_pos.to(part.device), part)
        spec = torch.fft.rfftn(folded.reshape(-1, *grid), dim=tuple(range(1, ndim + 1)))
        out.append(spec.abs().flatten(1).amax(1))
    return torch.cat(out).reshape(weight.shape[:2])
