"""Tests of san_core.spectrum against brute-force float64 references written here, independently.

The reference builds, for every single (i, j) kernel, the explicit matrix of the circular
correlation on the layer's grid (tap ``t`` of output position ``p`` reads input ``(p + t·d) mod N``)
and takes its operator 2-norm; the SAN constant is the max over kernels (Lemma 1).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from san_core import compensation_gain, conv_constant, linear_constant, official_constant, subset_size

ALL_METHODS = ("fft", "matmul", "pruned", "auto")
TINY_MEMORY = 4096  # bytes: forces the matmul paths to chunk over kernels and frequencies
REF_RTOL = 1e-9


# --------------------------------------------------------------------------- brute-force references


def _positions(shape) -> torch.Tensor:
    """All multi-indices of ``shape`` in row-major order, ``(prod(shape), len(shape))``."""
    return torch.tensor(list(itertools.product(*(range(n) for n in shape))), dtype=torch.int64).reshape(-1, len(shape))


def _flatten(pos: torch.Tensor, shape) -> torch.Tensor:
    flat = torch.zeros(pos.shape[0], dtype=torch.int64)
    for dim, size in enumerate(shape):
        flat = flat * size + pos[:, dim]
    return flat


def circulant_matrices(kernels: torch.Tensor, grid, dilation=1, *, sign: int = 1) -> torch.Tensor:
    """Explicit single-channel circular operators on ``grid``, one per kernel: ``(K, N, N)``, float64.

    ``sign=+1``: correlation (row p, column (p + t·d) mod N gets w[t]); ``sign=-1``: convolution.
    Taps that land on the same column (kernel wrapping around a small grid) add up.
    """
    kernels = kernels.detach().to(torch.float64)
    ksize = tuple(kernels.shape[1:])
    ndim = len(ksize)
    dil = torch.tensor([dilation] * ndim if isinstance(dilation, int) else list(dilation), dtype=torch.int64)
    grid_t = torch.tensor(list(grid), dtype=torch.int64)
    out_pos = _positions(grid)
    rows = torch.arange(out_pos.shape[0])
    num = out_pos.shape[0]
    flat_w = kernels.reshape(kernels.shape[0], -1)
    mats = torch.zeros(kernels.shape[0], num, num, dtype=torch.float64)
    for t, tap in enumerate(_positions(ksize)):
        cols = _flatten((out_pos + sign * tap * dil) % grid_t, grid)
        mats[:, rows, cols] += flat_w[:, t, None]
    return mats


def _kernels_of(weight: torch.Tensor) -> torch.Tensor:
    """Every (i, j) kernel of a conv weight as a batch ``(m·n, *k)``."""
    return weight.reshape(-1, *weight.shape[2:])


def _max_opnorm(mats: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(mats, ord=2).max().item()


def ref_forward(weight, grid, dilation=1) -> float:
    """Lemma 1: max over kernels of the circulant's 2-norm on ``grid``."""
    return _max_opnorm(circulant_matrices(_kernels_of(weight), grid, dilation))


def ref_forward_strided(weight, grid, stride, dilation=1) -> float:
    """2-norm of the strided operator: the circulant's rows at output positions that are multiples of s."""
    ndim = len(grid)
    stride_t = torch.tensor([stride] * ndim if isinstance(stride, int) else list(stride), dtype=torch.int64)
    keep = ((_positions(grid) % stride_t) == 0).all(dim=1)
    mats = circulant_matrices(_kernels_of(weight), grid, dilation)[:, keep, :]
    return _max_opnorm(mats)


def ref_transposed_exact(weight, input_size, stride, dilation=1) -> float:
    """2-norm of (upsample by zero insertion, then circular convolution on the output grid)."""
    ndim = len(input_size)
    stride_l = [stride] * ndim if isinstance(stride, int) else list(stride)
    out_grid = tuple(n * s for n, s in zip(input_size, stride_l))
    in_pos = _positions(input_size)
    upsample = torch.zeros(math.prod(out_grid), in_pos.shape[0], dtype=torch.float64)
    upsample[_flatten(in_pos * torch.tensor(stride_l), out_grid), torch.arange(in_pos.shape[0])] = 1.0
    conv = circulant_matrices(_kernels_of(weight), out_grid, dilation, sign=-1)
    return _max_opnorm(conv @ upsample)


def ref_official(weight: torch.Tensor, input_size) -> float:
    """The authors' released formula, verbatim."""
    h, w = input_size
    kh, kw = weight.shape[-2:]
    padded = F.pad(weight.detach().to(torch.float64), (0, h - kh, 0, w - kw))
    return torch.linalg.vector_norm(torch.fft.fft2(padded), dim=-1).amax().item()


def harmonic_exact(n: int) -> Fraction:
    return sum((Fraction(1, j) for j in range(1, n + 1)), Fraction(0))


def harmonic_fsum(n: int) -> float:
    return math.fsum(1.0 / j for j in range(1, n + 1))


# --------------------------------------------------------------------------- helpers


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64).to(dtype)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def assert_all_methods_match(weight, input_size, expected: float, rtol: float = REF_RTOL, **kwargs) -> None:
    """Every method (and a chunked matmul/pruned) equals ``expected`` within ``rtol``."""
    runs = {m: {"method": m} for m in ALL_METHODS}
    runs["matmul_chunked"] = {"method": "matmul", "max_memory": TINY_MEMORY}
    runs["pruned_chunked"] = {"method": "pruned", "max_memory": TINY_MEMORY}
    for name, extra in runs.items():
        got = conv_constant(weight, input_size, **kwargs, **extra)
        assert got.dim() == 0
        assert _rel(got.item(), expected) <= rtol, f"{name}: got {got.item()!r}, expected {expected!r}"


# --------------------------------------------------------------------------- the reference itself


def test_reference_circulant_matches_conv2d_circular():
    """Sanity check of the reference builder: its matrix applies the same map as conv2d, circular."""
    w = _randn(1, 1, 3, 2, seed=1)
    x = _randn(1, 1, 5, 4, seed=2)
    mat = circulant_matrices(w[0], (5, 4))[0]
    padded = F.pad(x, (0, 1, 0, 2), mode="circular")  # wrap right/bottom: out[p] = Σ w[t] x[p + t]
    expected = F.conv2d(padded, w).reshape(-1)
    torch.testing.assert_close(mat @ x.reshape(-1), expected, rtol=1e-12, atol=1e-12)


def test_reference_opnorm_is_max_dft_modulus():
    """Lemma 1 on the reference: the circulant's 2-norm equals max |DFT| of the zero-padded kernel."""
    w = _randn(1, 1, 3, 3, seed=3)
    padded = F.pad(w[0, 0], (0, 4, 0, 2))  # to (5, 7)
    assert _rel(ref_forward(w, (5, 7)), torch.fft.fft2(padded).abs().max().item()) < 1e-12


# --------------------------------------------------------------------------- forward, stride 1


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("input_size", [(5, 5), (5, 7), (6, 4)])
def test_conv2d_matches_circulant_reference(k, input_size):
    w = _randn(3, 2, k, k, seed=10 + k)
    assert_all_methods_match(w, input_size, ref_forward(w, input_size))


@pytest.mark.parametrize("ksize", [(2, 3), (3, 1), (1, 4)])
def test_conv2d_nonsquare_kernel(ksize):
    w = _randn(2, 3, *ksize, seed=20)
    assert_all_methods_match(w, (5, 6), ref_forward(w, (5, 6)))


def test_kernel_larger_than_map_wraps_around():
    w = _randn(2, 2, 5, 5, seed=30)
    size = (3, 4)
    expected = ref_forward(w, size)
    assert_all_methods_match(w, size, expected)
    # A naive fft2(w, s=size) crops the kernel instead of wrapping it: a different (wrong) value.
    naive = torch.fft.fft2(w, s=size).abs().amax().item()
    assert _rel(naive, expected) > 1e-3


def test_map_orientation_h_to_h_and_w_to_w():
    """A (5, 7) map: the kernel is padded H→5, W→7, not swapped."""
    w = _randn(2, 2, 3, 3, seed=40)
    right, swapped = ref_forward(w, (5, 7)), ref_forward(w, (7, 5))
    assert _rel(right, swapped) > 1e-3  # the test can tell the orientations apart
    assert_all_methods_match(w, (5, 7), right)
    w_ns = _randn(2, 2, 2, 3, seed=41)  # non-square kernel too
    right_ns, swapped_ns = ref_forward(w_ns, (5, 7)), ref_forward(w_ns, (7, 5))
    assert _rel(right_ns, swapped_ns) > 1e-3
    assert _rel(conv_constant(w_ns, (5, 7)).item(), right_ns) <= REF_RTOL


@pytest.mark.parametrize(
    ("k", "dilation", "input_size"),
    [
        (3, 2, (7, 8)),  # plain dilation
        (3, 2, (4, 5)),  # taps at 0, 2, 4: the last wraps onto 0 on the 4-high map
        (3, 3, (5, 5)),  # taps at 0, 3, 6 → 6 wraps to 1
        (2, (2, 1), (5, 6)),  # per-dim dilation
    ],
)
def test_dilation(k, dilation, input_size):
    w = _randn(3, 2, k, k, seed=50)
    assert_all_methods_match(w, input_size, ref_forward(w, input_size, dilation), dilation=dilation)


def test_grouped_conv_is_max_over_present_kernels():
    groups = 3
    w = _randn(6, 2, 3, 3, seed=60)  # Conv2d(6, 6, 3, groups=3).weight layout (out, in/groups, k, k)
    assert_all_methods_match(w, (5, 6), ref_forward(w, (5, 6)), groups=groups)
    # groups does not change the value: the weight holds exactly the connected kernels
    assert conv_constant(w, (5, 6), groups=groups).item() == conv_constant(w, (5, 6)).item()
    depthwise = _randn(4, 1, 3, 3, seed=61)
    assert _rel(conv_constant(depthwise, (5, 6), groups=4).item(), ref_forward(depthwise, (5, 6))) <= REF_RTOL


@pytest.mark.parametrize("groups", [4, 5, 0, -1])
def test_groups_not_dividing_raises(groups):
    with pytest.raises(ValueError, match="groups"):
        conv_constant(_randn(6, 2, 3, 3), (5, 5), groups=groups)


def test_grouped_conv_transpose_accepted():
    """ConvTranspose2d(4, 4, 3, groups=4).weight is (4, 1, 3, 3): in=4 is divisible by groups=4."""
    layer = torch.nn.ConvTranspose2d(4, 4, 3, groups=4).double()
    w = layer.weight.detach()
    expected = ref_forward(w, (5, 6))
    assert _rel(conv_constant(w, (5, 6), groups=4, transposed=True).item(), expected) <= REF_RTOL


def test_grouped_conv_transpose_checks_in_channels():
    """A ConvTranspose weight (in, out/groups, k, k) = (2, 4, 3, 3) cannot have groups=4 (in=2)."""
    with pytest.raises(ValueError, match="groups"):
        conv_constant(_randn(2, 4, 3, 3), (5, 6), groups=4, transposed=True)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9])
def test_conv1d(k):
    w = _randn(3, 2, k, seed=70 + k)
    assert_all_methods_match(w, (7,), ref_forward(w, (7,)))
    assert_all_methods_match(w, (7,), ref_forward(w, (7,), 2), dilation=2)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_conv3d(k):
    w = _randn(2, 2, k, k, k, seed=80 + k)
    assert_all_methods_match(w, (3, 4, 5), ref_forward(w, (3, 4, 5)))


def test_conv3d_anisotropic_kernel_larger_than_depth():
    w = _randn(2, 1, 4, 2, 3, seed=85)
    assert_all_methods_match(w, (3, 4, 5), ref_forward(w, (3, 4, 5)))


@pytest.mark.parametrize(("k", "input_size"), [(3, (1, 1)), (3, (1, 5)), (2, (2, 1)), (4, (2, 2))])
def test_degenerate_tiny_maps(k, input_size):
    w = _randn(3, 2, k, k, seed=86)
    assert_all_methods_match(w, input_size, ref_forward(w, input_size))


def test_zero_weight_gives_zero():
    w = torch.zeros(4, 3, 3, 3, dtype=torch.float64)
    for method in ALL_METHODS:
        got = conv_constant(w, (6, 6), method=method)
        assert got.item() == 0.0, method
    assert conv_constant(w, (6, 6), stride=2, stride_mode="exact", method="pruned").item() == 0.0


def test_non_contiguous_and_requires_grad_weight():
    base = _randn(3, 4, 3, 3, seed=87)
    w = base.transpose(0, 1)  # a (4, 3, 3, 3) non-contiguous view
    assert not w.is_contiguous()
    expected = ref_forward(w.contiguous(), (5, 6))
    assert_all_methods_match(w, (5, 6), expected)
    leaf = w.detach().clone().requires_grad_(True)
    got = conv_constant(leaf, (5, 6))
    assert not got.requires_grad
    assert _rel(got.item(), expected) <= REF_RTOL


# --------------------------------------------------------------------------- strided, forward


@pytest.mark.parametrize(
    ("stride", "k", "input_size"),
    [(2, 3, (6, 8)), (2, 4, (4, 6)), (3, 3, (6, 9)), (3, 5, (6, 6)), ((2, 1), 3, (6, 5)), ((1, 3), 2, (5, 6))],
)
def test_exact_stride_forward(stride, k, input_size):
    w = _randn(3, 2, k, k, seed=90 + k)
    expected = ref_forward_strided(w, input_size, stride)
    assert_all_methods_match(w, input_size, expected, stride=stride, stride_mode="exact")
    # paper mode ignores the stride and is an upper bound of the exact gain
    paper = conv_constant(w, input_size, stride=stride).item()
    assert _rel(paper, ref_forward(w, input_size)) <= REF_RTOL
    assert paper >= expected * (1 - 1e-12)


def test_exact_stride_with_dilation():
    w = _randn(2, 3, 3, 3, seed=95)
    expected = ref_forward_strided(w, (6, 8), 2, dilation=(1, 2))
    assert_all_methods_match(w, (6, 8), expected, stride=2, dilation=(1, 2), stride_mode="exact")


def test_exact_stride_is_strictly_below_paper_for_some_layer():
    w = _randn(4, 4, 3, 3, seed=96)
    exact = conv_constant(w, (8, 8), stride=2, stride_mode="exact").item()
    paper = conv_constant(w, (8, 8), stride=2).item()
    assert exact < paper * (1 - 1e-3)


def test_conv1d_exact_stride():
    w = _randn(2, 2, 4, seed=97)
    expected = ref_forward_strided(w, (9,), 3)
    assert_all_methods_match(w, (9,), expected, stride=3, stride_mode="exact")


@pytest.mark.parametrize(("input_size", "stride"), [((5, 6), 2), ((6, 7), (2, 2)), ((6, 6), (1, 4))])
def test_exact_stride_needs_divisible_map(input_size, stride):
    with pytest.raises(ValueError, match="divisible"):
        conv_constant(_randn(2, 2, 3, 3), input_size, stride=stride, stride_mode="exact")
    conv_constant(_randn(2, 2, 3, 3), input_size, stride=stride)  # paper mode accepts any map


# --------------------------------------------------------------------------- transposed


@pytest.mark.parametrize(("stride", "input_size"), [(1, (5, 6)), (2, (3, 4)), ((2, 1), (3, 5))])
def test_transposed_paper_mode_on_output_grid(stride, input_size):
    w = _randn(2, 3, 3, 3, seed=100)  # ConvTranspose2d(2, 3, 3).weight layout (in, out, k, k)
    stride_l = [stride] * 2 if isinstance(stride, int) else list(stride)
    out_grid = tuple(n * s for n, s in zip(input_size, stride_l))
    expected = ref_forward(w, out_grid)
    assert_all_methods_match(w, input_size, expected, stride=stride, transposed=True)
    if out_grid != tuple(input_size):  # the grid matters: the input grid gives a different value
        assert _rel(ref_forward(w, input_size), expected) > 1e-3


@pytest.mark.parametrize(("stride", "k", "input_size"), [(2, 3, (3, 4)), (2, 4, (3, 3)), ((2, 3), 3, (2, 3))])
def test_transposed_exact_stride(stride, k, input_size):
    w = _randn(2, 2, k, k, seed=110 + k)
    expected = ref_transposed_exact(w, input_size, stride)
    assert_all_methods_match(w, input_size, expected, stride=stride, transposed=True, stride_mode="exact")
    # the adjoint identity: equal to the forward strided operator on the output grid
    stride_l = [stride] * 2 if isinstance(stride, int) else list(stride)
    out_grid = tuple(n * s for n, s in zip(input_size, stride_l))
    assert _rel(expected, ref_forward_strided(w, out_grid, stride)) < 1e-10
    paper = conv_constant(w, input_size, stride=stride, transposed=True).item()
    assert paper >= expected * (1 - 1e-12)


def test_transposed_exact_stride_1d_with_dilation():
    w = _randn(2, 3, 3, seed=120)
    expected = ref_transposed_exact(w, (4,), 2, dilation=2)
    assert_all_methods_match(w, (4,), expected, stride=2, dilation=2, transposed=True, stride_mode="exact")


# --------------------------------------------------------------------------- methods agree at scale


def _weights(kind: str, shape, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    if kind == "gaussian":
        w = torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "cauchy":
        w = torch.randn(shape, generator=g, dtype=torch.float64) / torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "student_t_huge":  # Student-t (3 dof) with a few huge kernels
        chi2 = torch.randn((3, *shape), generator=g, dtype=torch.float64).square().sum(dim=0)
        w = torch.randn(shape, generator=g, dtype=torch.float64) / (chi2 / 3).sqrt()
        w[0, 3] *= 1e3
        w[7, 1] *= 3e2
        w[11, 5] *= 5e2
    elif kind == "lowpass":  # all-positive smooth kernels: DC dominates
        ks = shape[2:]
        window = torch.ones(())
        for k in ks:
            x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
            window = window[..., None] * torch.exp(-(x**2) / 2)
        amp = torch.rand(shape[:2], generator=g, dtype=torch.float64) + 0.5
        w = amp[:, :, None, None] * window
    else:
        raise AssertionError(kind)
    return w.to(dtype).contiguous()


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["gaussian", "cauchy", "student_t_huge", "lowpass"])
def test_methods_agree_on_moderate_map(kind, dtype, k):
    w = _weights(kind, (16, 8, k, k), dtype, seed=k)
    size = (48, 40)
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    ref_stats: dict = {}
    ref = conv_constant(w, size, method="fft", stats=ref_stats)
    assert ref.dtype == dtype
    assert ref_stats == {"evaluated": 128, "total": 128}
    # an independent float64 FFT check of the fft method itself
    f64 = torch.fft.fft2(w.double(), s=size).abs().amax().item()
    assert _rel(ref.item(), f64) <= (1e-6 if dtype == torch.float32 else 1e-12)
    runs = {
        "matmul": {"method": "matmul"},
        "pruned": {"method": "pruned"},
        "auto": {"method": "auto"},
        "matmul_chunked": {"method": "matmul", "max_memory": TINY_MEMORY},
        "pruned_chunked": {"method": "pruned", "max_memory": TINY_MEMORY},
    }
    for name, extra in runs.items():
        stats: dict = {}
        got = conv_constant(w, size, stats=stats, **extra)
        assert got.dtype == dtype
        assert _rel(got.item(), ref.item()) <= rtol, f"{name}: {got.item()!r} vs fft {ref.item()!r}"
        assert stats["total"] == 128
        if extra["method"] == "matmul":
            assert stats["evaluated"] == 128
        if extra["method"] == "pruned" and kind in ("cauchy", "student_t_huge", "lowpass"):
            assert stats["evaluated"] < stats["total"], f"{name}: pruning skipped nothing ({stats})"


@pytest.mark.parametrize("max_memory", [None, TINY_MEMORY])
def test_pruning_when_the_winner_has_the_smallest_l1_bound(max_memory):
    """127 spread-spectrum kernels with large ‖w‖₁ and one checkerboard kernel with the smallest ‖w‖₁
    but the largest peak (not at DC): pruning must evaluate its way down to the last kernel."""
    size = (48, 40)
    g = _gen(11)
    cand = (torch.randint(0, 2, (2000, 3, 3), generator=g).double() * 2 - 1) * (
        torch.rand(2000, 3, 3, generator=g, dtype=torch.float64) * 0.1 + 0.95
    )
    peak = torch.fft.fft2(cand, s=size).abs().amax(dim=(-2, -1))
    l1 = cand.abs().sum(dim=(-2, -1))
    spread = cand[peak < 0.7 * l1][:127]
    assert spread.shape[0] == 127
    # checkerboard: its peak (= its L1 norm) sits at the Nyquist frequency, not at DC
    checker = (-1.0) ** (torch.arange(3)[:, None] + torch.arange(3)[None, :]).double()
    winner = (0.85 * l1[peak < 0.7 * l1][:127].min().item() / 9) * checker[None]
    kernels = torch.cat([spread, winner])[torch.randperm(128, generator=g)]
    w = kernels.reshape(16, 8, 3, 3)
    # premise: the true maximum belongs to the kernel with the smallest L1 bound
    peaks = torch.fft.fft2(kernels, s=size).abs().amax(dim=(-2, -1))
    bounds = kernels.abs().sum(dim=(-2, -1))
    assert peaks.argmax() == bounds.argmin()
    expected = peaks.max().item()
    kw = {} if max_memory is None else {"max_memory": max_memory}
    stats: dict = {}
    got = conv_constant(w, size, method="pruned", stats=stats, **kw)
    assert _rel(got.item(), expected) <= 1e-12
    # every L1 bound is above the result; the coarse-grid bound sees through the spread kernels
    assert (bounds > expected).all() and stats["total"] == 128 and stats["evaluated"] < 128, stats
    got = conv_constant(w, size, method="pruned", stride=2, stride_mode="exact", **kw)
    assert _rel(got.item(), conv_constant(w, size, method="fft", stride=2, stride_mode="exact").item()) <= 1e-12


def test_float32_value_unaffected_by_medium_matmul_precision(restore_matmul_precision):
    """On CPUs where 'medium' enables bf16 matmuls, the constant must still be full float32."""
    w = _weights("gaussian", (16, 8, 3, 3), torch.float32)
    exact = conv_constant(w, (24, 20), method="fft").item()
    torch.set_float32_matmul_precision("medium")
    for method in ("matmul", "pruned"):
        assert _rel(conv_constant(w, (24, 20), method=method).item(), exact) <= 1e-6
    assert (
        _rel(linear_constant(w.reshape(16, -1)).item(), torch.linalg.svdvals(w.reshape(16, -1).double())[0].item())
        <= 1e-6
    )


def test_tiny_max_memory_really_chunks(monkeypatch):
    """max_memory=4096 splits both kernels and frequencies, and the result does not change."""
    from san_core import _dft

    blocks: list[int] = []
    freq_ranges: set[tuple[int, int]] = set()
    orig_block, orig_phase = _dft._block_power, _dft.phase_matrix

    def spy_block(kernels, *args, **kwargs):
        blocks.append(kernels.shape[0])
        return orig_block(kernels, *args, **kwargs)

    def spy_phase(offsets, grid, start, stop, *args, **kwargs):
        freq_ranges.add((start, stop))
        return orig_phase(offsets, grid, start, stop, *args, **kwargs)

    monkeypatch.setattr(_dft, "_block_power", spy_block)
    monkeypatch.setattr(_dft, "phase_matrix", spy_phase)
    w = _weights("gaussian", (16, 8, 3, 3), torch.float32)
    got = conv_constant(w, (48, 40), method="matmul", max_memory=TINY_MEMORY)
    assert len(blocks) > 1 and max(blocks) < 128 and sum(blocks) == 128
    assert len(freq_ranges) > 1
    assert _rel(got.item(), conv_constant(w, (48, 40), method="fft").item()) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_methods_agree_strided_exact_moderate_map(dtype):
    w = _weights("student_t_huge", (16, 8, 4, 4), dtype, seed=5)
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    kw = {"stride": 2, "stride_mode": "exact", "dilation": (1, 2)}
    ref = conv_constant(w, (48, 40), method="fft", **kw).item()
    for extra in ({"method": "matmul"}, {"method": "pruned"}, {"method": "matmul", "max_memory": TINY_MEMORY}):
        assert _rel(conv_constant(w, (48, 40), **kw, **extra).item(), ref) <= rtol


@pytest.mark.parametrize("size", [(8, 8), (64, 64)])
def test_auto_prunes_exactly_on_small_and_large_maps(size):
    w = _weights("student_t_huge", (16, 8, 3, 3), torch.float64)
    stats: dict = {}
    got = conv_constant(w, size, method="auto", stats=stats)
    assert stats["evaluated"] < stats["total"] == 128
    assert _rel(got.item(), conv_constant(w, size, method="fft").item()) <= 1e-12


# --------------------------------------------------------------------------- filter_ratio and gain


@pytest.mark.parametrize("ratio", [0.25, 0.3, 0.02])
def test_filter_ratio_reproducible_subset(ratio):
    w = _randn(8, 6, 3, 3, seed=130)
    size = (5, 6)
    num = 48
    a = conv_constant(w, size, filter_ratio=ratio, generator=_gen(7))
    b = conv_constant(w, size, filter_ratio=ratio, generator=_gen(7))
    assert torch.equal(a, b)
    count = math.ceil(Fraction(num) * Fraction(str(ratio)))
    chosen = torch.randperm(num, generator=_gen(7))[:count]
    gain = compensation_gain(num, ratio)
    assert gain > 1
    expected = _max_opnorm(circulant_matrices(_kernels_of(w)[chosen], size)) * gain
    assert _rel(a.item(), expected) <= REF_RTOL
    full = ref_forward(w, size)
    assert a.item() <= full * gain * (1 + 1e-12)
    # an explicit gain replaces the default one
    c = conv_constant(w, size, filter_ratio=ratio, gain=2.5, generator=_gen(7))
    assert _rel(c.item(), expected / gain * 2.5) <= REF_RTOL
    stats: dict = {}
    conv_constant(w, size, filter_ratio=ratio, generator=_gen(7), method="matmul", stats=stats)
    assert stats["evaluated"] == count


def test_filter_ratio_methods_agree():
    w = _weights("cauchy", (16, 8, 3, 3), torch.float64)
    vals = [conv_constant(w, (12, 10), filter_ratio=0.3, generator=_gen(3), method=m).item() for m in ALL_METHODS]
    assert max(vals) - min(vals) <= 1e-12 * max(vals)


def test_explicit_gain_multiplies_at_full_ratio():
    w = _randn(3, 2, 3, 3, seed=140)
    base = conv_constant(w, (5, 6)).item()
    assert _rel(base, ref_forward(w, (5, 6))) <= REF_RTOL
    assert _rel(conv_constant(w, (5, 6), gain=3.0).item(), 3.0 * base) <= 1e-15
    assert _rel(conv_constant(w, (5, 6), filter_ratio=1.0).item(), base) <= 1e-15


@pytest.mark.parametrize(
    ("num", "ratio"),
    [
        (1, 1.0),
        (10, 0.3),
        (48, 0.25),
        (100, 0.07),
        (500, 0.5),
        (1000, 0.001),
        (64**2, 0.25),
        (64**2, 0.5),
        (4097, 0.5),  # just past the switch to the asymptotic expansion
        (5000, 0.9),
    ],
)
def test_compensation_gain_exact_fractions(num, ratio):
    count = math.ceil(Fraction(num) * Fraction(str(ratio)))
    expected = harmonic_exact(num) / harmonic_exact(max(count, 1))
    assert subset_size(num, ratio) == max(count, 1)
    assert _rel(compensation_gain(num, ratio), float(expected)) <= 1e-12


@pytest.mark.parametrize(
    ("num", "ratio"),
    [
        (20000, 0.3),
        (512 * 256, 0.25),
        (512 * 256, 0.1),
        (512 * 256, 0.01),
        (512 * 256, 0.001),
        (512 * 512, 0.75),
    ],
)
def test_compensation_gain_large_fsum(num, ratio):
    count = math.ceil(Fraction(num) * Fraction(str(ratio)))
    expected = harmonic_fsum(num) / harmonic_fsum(count)
    assert _rel(compensation_gain(num, ratio), expected) <= 1e-12


def test_compensation_gain_paper_value_and_identity():
    assert compensation_gain(4096, 0.25) == pytest.approx(1.185, abs=5e-4)
    for num in (1, 7, 4096, 512 * 256):
        assert compensation_gain(num, 1.0) == 1.0
        assert compensation_gain(num, 1) == 1.0


@pytest.mark.parametrize(("num", "ratio"), [(16, 0.0), (16, -0.5), (16, 1.5), (0, 0.5), (-3, 0.5)])
def test_compensation_gain_errors(num, ratio):
    with pytest.raises(ValueError):
        compensation_gain(num, ratio)


# --------------------------------------------------------------------------- linear_constant


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(20, 30), (30, 20), (1000, 16), (1, 5)])  # Linear and Embedding shapes
def test_linear_constant_svd(shape, dtype):
    w = _randn(*shape, seed=150, dtype=dtype)
    got = linear_constant(w)
    assert got.dim() == 0 and got.dtype == dtype
    expected = torch.linalg.svdvals(w.double())[0].item()
    assert _rel(got.item(), expected) <= (1e-6 if dtype == torch.float32 else 1e-12)


def test_linear_constant_embedding_layer():
    emb = torch.nn.Embedding(50, 8)
    got = linear_constant(emb.weight)
    assert _rel(got.item(), torch.linalg.svdvals(emb.weight.detach().double())[0].item()) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_constant_power_converges(dtype):
    w = _randn(20, 30, seed=160, dtype=dtype)
    expected = torch.linalg.svdvals(w.double())[0].item()
    got = linear_constant(w, method="power", n_iter=2000)
    assert _rel(got.item(), expected) <= (1e-5 if dtype == torch.float32 else 1e-10)
    u = torch.randn(20, generator=_gen(1), dtype=dtype)
    got_u = linear_constant(w, method="power", u=u, n_iter=2000)
    assert _rel(got_u.item(), expected) <= (1e-5 if dtype == torch.float32 else 1e-10)
    left = torch.linalg.svd(w.double())[0][:, 0]
    assert abs(torch.dot(u.double(), left).item()) == pytest.approx(1.0, abs=1e-4)


def test_linear_constant_power_u_persists():
    w = _randn(12, 9, seed=170)
    u0 = torch.randn(12, generator=_gen(2), dtype=torch.float64)
    u = u0.clone()
    ptr = u.data_ptr()
    first = linear_constant(w, method="power", u=u, n_iter=1)
    assert u.data_ptr() == ptr  # updated in place
    assert not torch.allclose(u, u0 / u0.norm())
    assert u.norm().item() == pytest.approx(1.0, abs=1e-12)
    second = linear_constant(w, method="power", u=u, n_iter=1)
    assert second.item() >= first.item() * (1 - 1e-12)  # power iteration is monotone
    u_once = u0.clone()
    once = linear_constant(w, method="power", u=u_once, n_iter=2)
    assert _rel(second.item(), once.item()) <= 1e-12
    torch.testing.assert_close(u, u_once, rtol=1e-12, atol=1e-12)


def test_linear_constant_errors():
    w = _randn(4, 3)
    with pytest.raises(ValueError, match="method"):
        linear_constant(w, method="lanczos")
    with pytest.raises(ValueError, match="u of shape"):
        linear_constant(w, method="power", u=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_iter"):
        linear_constant(w, method="power", n_iter=0)
    with pytest.raises(ValueError, match="2-D"):
        linear_constant(torch.ones(4))
    with pytest.raises(TypeError, match="floating"):
        linear_constant(torch.ones(4, 3, dtype=torch.int64))


# --------------------------------------------------------------------------- official_constant


@pytest.mark.parametrize(("k", "input_size"), [(3, (8, 8)), (4, (8, 8)), (3, (16, 16)), (3, (6, 9)), (2, (9, 5))])
def test_official_constant_matches_released_formula(k, input_size):
    w = _randn(4, 3, k, k, seed=180 + k)
    got = official_constant(w, input_size)
    assert got.dtype == torch.float64
    assert _rel(got.item(), ref_official(w, input_size)) <= 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k", "size"), [(3, 8), (4, 8), (3, 16), (1, 5)])
def test_official_constant_exceeds_paper_value(seed, k, size):
    layer = torch.nn.Conv2d(6, 5, k)
    torch.nn.init.normal_(layer.weight, generator=_gen(seed))
    w = layer.weight.detach()
    official = official_constant(w, (size, size)).item()
    paper = conv_constant(w, (size, size)).item()
    assert official / paper > 1.0 + 1e-3


# --------------------------------------------------------------------------- dtypes and global state


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_half_precision_weights(low, method):
    w = _randn(8, 4, 3, 3, seed=190, dtype=low)
    got = conv_constant(w, (12, 10), method=method)
    assert got.dtype == torch.float32
    expected = conv_constant(w.float(), (12, 10), method=method).item()
    assert _rel(got.item(), expected) <= 1e-3
    assert _rel(got.item(), ref_forward(w.double(), (12, 10))) <= 1e-3


def test_float64_weight_returns_float64():
    w = _randn(2, 2, 3, 3)
    assert conv_constant(w, (5, 5)).dtype == torch.float64
    assert conv_constant(w.float(), (5, 5)).dtype == torch.float32


@pytest.mark.parametrize("method", ALL_METHODS)
def test_autocast_does_not_change_the_value(method):
    w = _randn(8, 4, 3, 3, seed=200, dtype=torch.float32)
    outside = conv_constant(w, (12, 10), method=method).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = conv_constant(w, (12, 10), method=method)
        lin_inside = linear_constant(w.reshape(8, -1))
        assert torch.is_autocast_enabled("cpu")  # autocast is re-enabled after the call
    assert inside.dtype == torch.float32
    assert _rel(inside.item(), outside) <= 1e-6
    assert _rel(lin_inside.item(), linear_constant(w.reshape(8, -1)).item()) <= 1e-6


def test_matmul_precision_restored(restore_matmul_precision):
    torch.set_float32_matmul_precision("medium")
    w = _randn(4, 4, 3, 3, dtype=torch.float32)
    conv_constant(w, (8, 8), method="matmul")
    assert torch.get_float32_matmul_precision() == "medium"
    linear_constant(w.reshape(4, -1))
    assert torch.get_float32_matmul_precision() == "medium"
    with pytest.raises(ValueError):  # also restored when the call fails
        conv_constant(w, (5, 5), stride=2, stride_mode="exact")
    assert torch.get_float32_matmul_precision() == "medium"


def test_inputs_not_mutated():
    w = _randn(4, 3, 3, 3, seed=210)
    before = w.clone()
    conv_constant(w, (6, 6), method="pruned", filter_ratio=0.5, generator=_gen(0))
    conv_constant(w, (6, 6), stride=2, stride_mode="exact")
    assert torch.equal(w, before)


# --------------------------------------------------------------------------- bad inputs


def test_meta_weight_raises():
    with pytest.raises(ValueError, match="meta"):
        conv_constant(torch.empty(4, 3, 3, 3, device="meta"), (8, 8))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_weight_raises(dtype):
    with pytest.raises(TypeError, match="real floating-point"):
        conv_constant(torch.ones(4, 3, 3, 3, dtype=dtype), (8, 8))


def test_complex_weight_raises():
    with pytest.raises(TypeError, match="real floating-point"):
        conv_constant(torch.ones(4, 3, 3, 3, dtype=torch.complex64), (8, 8))


@pytest.mark.parametrize("input_size", [(8,), (8, 8, 8), (), 8, (8, 0), (8, -2)])
def test_bad_input_size_raises(input_size):
    with pytest.raises(ValueError, match="input_size"):
        conv_constant(_randn(4, 3, 3, 3), input_size)


@pytest.mark.parametrize("stride", [0, -1, (1, 0), (2, 2, 2)])
def test_bad_stride_raises(stride):
    with pytest.raises(ValueError, match="stride"):
        conv_constant(_randn(4, 3, 3, 3), (8, 8), stride=stride)


def test_bad_dilation_raises():
    with pytest.raises(ValueError, match="dilation"):
        conv_constant(_randn(4, 3, 3, 3), (8, 8), dilation=0)


def test_bad_stride_mode_raises():
    with pytest.raises(ValueError, match="stride_mode"):
        conv_constant(_randn(4, 3, 3, 3), (8, 8), stride_mode="strided")


def test_bad_method_raises():
    with pytest.raises(ValueError, match="method"):
        conv_constant(_randn(4, 3, 3, 3), (8, 8), method="svd")


@pytest.mark.parametrize("ratio", [0, 0.0, 1.5, -0.1])
def test_bad_filter_ratio_raises(ratio):
    with pytest.raises(ValueError, match="filter_ratio"):
        conv_constant(_randn(4, 3, 3, 3), (8, 8), filter_ratio=ratio)


@pytest.mark.parametrize("gain", [0, 0.0, -1.0, float("nan")])
def test_bad_gain_raises(gain):
    with pytest.raises(ValueError, match="gain"):
        conv_constant(_randn(4, 3, 3, 3), (8, 8), gain=gain)


def test_weight_without_spatial_dims_raises():
    with pytest.raises(ValueError, match="conv weight"):
        conv_constant(_randn(4, 3), (8,))
