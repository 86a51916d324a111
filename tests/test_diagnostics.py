"""san_core.diagnostics (exact conv σ₁, SN's estimate, channel sparsity, gains) and san_core.inspect."""

from __future__ import annotations

import itertools
import json
import math
import sys

import pytest
import torch
from torch import nn

import san_core
from san_core import channel_sparsity, effective_density, gain_from_sparsity
from san_core.diagnostics import conv_frequency_matrices, conv_singular_value, kernel_fourier_maxima, sn_estimate
from san_core.inspect import inspect_critic, main


def operator(w: torch.Tensor, size, stride=1, dilation=1, groups=1) -> torch.Tensor:
    """The explicit matrix of ``y_i[o] = Σ_j Σ_t w_ij[t] x_j[(s·o + d·t) mod N]`` (float64, index arithmetic)."""
    d = len(size)
    st = (stride,) * d if isinstance(stride, int) else tuple(stride)
    dl = (dilation,) * d if isinstance(dilation, int) else tuple(dilation)
    outs = [n // s for n, s in zip(size, st)]
    m, n_g = w.shape[:2]
    a = torch.zeros(m * math.prod(outs), n_g * groups * math.prod(size), dtype=torch.float64)
    for i, jl in itertools.product(range(m), range(n_g)):
        j = (i // (m // groups)) * n_g + jl
        for t in itertools.product(*[range(k) for k in w.shape[2:]]):
            for o in itertools.product(*[range(k) for k in outs]):
                pos = [(s * oo + tt * dd) % n for s, oo, tt, dd, n in zip(st, o, t, dl, size)]
                row = i * math.prod(outs) + sum(oo * math.prod(outs[a + 1 :]) for a, oo in enumerate(o))
                col = j * math.prod(size) + sum(pp * math.prod(size[a + 1 :]) for a, pp in enumerate(pos))
                a[row, col] += w[(i, jl, *t)]
    return a


CASES = [  # weight shape, map, stride, dilation, groups
    ((3, 2, 3, 3), (5, 6), 1, 1, 1),
    ((4, 2, 4, 4), (6, 8), 2, 1, 1),
    ((3, 2, 4, 4), (8, 8), (2, 1), 1, 1),
    ((4, 2, 3, 3), (4, 4), 1, 2, 2),
    ((2, 3, 5), (3,), 1, 1, 1),  # kernel larger than the map: taps wrap
    ((2, 2, 2, 2, 2), (2, 4, 3), 1, 1, 1),
]


@pytest.mark.parametrize("shape,size,stride,dilation,groups", CASES)
def test_conv_singular_value_matches_explicit_operator(shape, size, stride, dilation, groups):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.linalg.matrix_norm(operator(w, size, stride, dilation, groups), ord=2)
    got = conv_singular_value(w, size, stride, dilation=dilation, groups=groups)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(float(expected), rel=1e-12)
    tiny = conv_singular_value(w, size, stride, dilation=dilation, groups=groups, max_memory=1024)  # 1 freq/chunk
    assert float(tiny) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (4, 2, 1), (1, 1, 0)])
def test_conv_singular_value_matches_torch_circular_conv(k, stride, padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, k, stride, padding, bias=False, padding_mode="circular").double()
    basis = torch.eye(3 * 8 * 8, dtype=torch.float64).reshape(-1, 3, 8, 8)
    with torch.no_grad():
        matrix = conv(basis).reshape(basis.shape[0], -1)
    expected = torch.linalg.matrix_norm(matrix, ord=2)
    assert float(conv_singular_value(conv.weight, (8, 8), stride)) == pytest.approx(float(expected), rel=1e-12)
    f32 = conv_singular_value(conv.weight.float(), (8, 8), stride)
    assert f32.dtype == torch.float32 and float(f32) == pytest.approx(float(expected), rel=1e-5)


def test_transposed_is_the_adjoint_on_the_output_grid():
    w = torch.randn(4, 2, 4, 4, dtype=torch.float64)  # ConvTranspose2d(4 → 2) layout: (in, out, k, k)
    expected = torch.linalg.matrix_norm(operator(w, (8, 8), 2), ord=2)
    assert float(conv_singular_value(w, (4, 4), 2, transposed=True)) == pytest.approx(float(expected), rel=1e-12)


def test_frequency_matrices_are_the_dft_of_the_kernels():
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    p = conv_frequency_matrices(w, (6, 6))
    folded = torch.zeros(3, 2, 6, 6, dtype=torch.float64)
    folded[..., :3, :3] = w
    dft = torch.fft.rfft2(folded)  # (3, 2, 6, 4)
    assert p.shape == (6 * 4, 1, 3, 2)
    assert torch.allclose(p[:, 0], dft.permute(2, 3, 0, 1).reshape(-1, 3, 2), atol=1e-12)


def test_orderings_sn_exact_san():
    """SN ≤ σ₁ ≤ √T·SN (no aliasing); SAN (exact stride mode) ≤ σ₁ ≤ √(m·n)·SAN."""
    gen = torch.Generator().manual_seed(3)
    for shape, size, stride in [((8, 6, 3, 3), (8, 8), 1), ((6, 4, 4, 4), (8, 8), 2), ((5, 7, 1, 1), (4, 4), 1)]:
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        exact, sn = float(conv_singular_value(w, size, stride)), float(sn_estimate(w))
        san = float(san_core.conv_constant(w, size, stride=stride, stride_mode="exact"))
        taps, mn = shape[2] * shape[3], shape[0] * shape[1]
        assert sn <= exact * (1 + 1e-12) and exact <= math.sqrt(taps) * sn * (1 + 1e-12)
        assert san <= exact * (1 + 1e-12) and exact <= math.sqrt(mn) * san * (1 + 1e-12)


def test_where_the_orderings_fail():
    # Aliasing (kernel longer than the map): the SN estimate exceeds the true gain.
    w = torch.tensor([[[1.0, -1.0, 0.0]]], dtype=torch.float64)
    assert float(conv_singular_value(w, (1,))) == pytest.approx(0.0, abs=1e-15)
    assert float(sn_estimate(w)) == pytest.approx(math.sqrt(2))
    # Strided layer: SAN's default stride_mode="paper" (full-resolution max|DFT|) exceeds σ₁ of the strided operator.
    w = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)
    assert float(conv_singular_value(w, (4,), 2)) == pytest.approx(math.sqrt(2))
    assert float(san_core.conv_constant(w, (4,), stride=2)) == pytest.approx(2.0)
    assert float(san_core.conv_constant(w, (4,), stride=2, stride_mode="exact")) == pytest.approx(math.sqrt(2))


def test_sn_estimate_exact_and_power_iteration():
    w = torch.randn(16, 8, 3, 3, dtype=torch.float64)
    exact = torch.linalg.matrix_norm(w.reshape(16, -1), ord=2)
    assert float(sn_estimate(w)) == pytest.approx(float(exact), rel=1e-12)
    u = torch.ones(16, dtype=torch.float64)
    first = sn_estimate(w, 1, u=u)
    assert float(first) <= float(exact) and not torch.equal(u, torch.ones(16, dtype=torch.float64))
    assert float(sn_estimate(w, 200, u=u)) == pytest.approx(float(exact), rel=1e-8)
    wt = torch.randn(8, 16, 3, 3, dtype=torch.float64)  # ConvTranspose layout: torch's SN uses dim=1
    expected = torch.linalg.matrix_norm(wt.transpose(0, 1).reshape(16, -1), ord=2)
    assert float(sn_estimate(wt, dim=1)) == pytest.approx(float(expected), rel=1e-12)
    with pytest.raises(ValueError, match="expected u of shape"):
        sn_estimate(w, 1, u=torch.ones(3))


def test_sn_estimate_is_what_torch_spectral_norm_normalizes():
    conv = nn.Conv2d(4, 8, 3)
    torch.nn.utils.parametrizations.spectral_norm(conv)
    for _ in range(50):
        conv(torch.randn(1, 4, 5, 5))  # training mode: one power iteration per forward
    assert float(sn_estimate(conv.weight)) == pytest.approx(1.0, rel=1e-4)


def test_kernel_fourier_maxima_agree_with_san_core():
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    maxima = kernel_fourier_maxima(w, (7, 9), max_memory=2048)
    assert maxima.shape == (6, 5)
    assert float(maxima.max()) == pytest.approx(float(san_core.conv_constant(w, (7, 9))), rel=1e-12)
    assert float(maxima[2, 3]) == pytest.approx(float(san_core.conv_constant(w[2:3, 3:4], (7, 9))), rel=1e-12)
    assert float(kernel_fourier_maxima(w, (2, 2)).max()) == pytest.approx(float(san_core.conv_constant(w, (2, 2))))


def test_channel_sparsity():
    x = torch.ones(4, 8, 3, 3)
    x[:, :3] = 0
    x[0, 3] = 0.01
    stats = channel_sparsity(x)
    assert stats.zero_fraction.tolist() == [3 / 8] * 4 and stats.zeros == 12
    assert int(stats.counts.sum()) == 32 and stats.norms.shape == (4, 8)
    assert float(stats.norms[1, 4]) == pytest.approx(3.0)
    assert channel_sparsity(x, threshold=0.1).zero_fraction[0] == pytest.approx(4 / 8)
    assert channel_sparsity(torch.tensor([[0.0, 2.0], [1.0, 1.0]])).zero_fraction.tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="expected floating features"):
        channel_sparsity(torch.ones(5, dtype=torch.int64))
    a = stats.norms
    brute = [(sum(r) ** 2 / (len(r) * sum(v * v for v in r))) for r in a.tolist()]
    assert stats.effective_density.tolist() == pytest.approx(brute, rel=1e-12)
    assert brute[1] == pytest.approx(5 / 8)  # five equal non-zero channels of eight
    x[2] = 0
    assert channel_sparsity(x).effective_density[2].isnan() and stats.mean_effective_density == pytest.approx(
        sum(brute) / 4
    )
    with pytest.raises(ValueError, match="expected non-negative channel norms"):
        effective_density(torch.tensor([[1.0, -1.0]]))


def test_gain_from_sparsity():
    gains = gain_from_sparsity({"a": 0.25, "b": 1.0, "c": 0.5}, caps={"b": 1.5})
    assert gains == pytest.approx({"a": 1.0, "b": 1.5, "c": math.sqrt(2)})
    assert gain_from_sparsity({"a": 0.5}, reference=0.5) == {"a": 1.0}
    with pytest.raises(ValueError, match="densities in"):
        gain_from_sparsity({"a": 0.0})


def test_errors_name_expected_and_got():
    with pytest.raises(ValueError, match="divides by the stride"):
        conv_singular_value(torch.randn(2, 2, 3, 3), (5, 5), 2)
    with pytest.raises(TypeError, match="real floating-point"):
        conv_singular_value(torch.ones(2, 2, 3, 3, dtype=torch.int64), (5, 5))
    with pytest.raises(ValueError, match="2 spatial dims"):
        conv_singular_value(torch.randn(2, 2, 3, 3), (5,))
    with pytest.raises(ValueError, match="groups=3"):
        conv_singular_value(torch.randn(4, 2, 3, 3), (5, 5), groups=3)


class Sparse(nn.Module):
    """conv1 → ReLU → conv2 → flatten → fc, with conv1's channels 0..2 forced to zero after the ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular")
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1, padding_mode="circular")
        self.fc = nn.Linear(4 * 8 * 8, 1)
        with torch.no_grad():
            self.conv1.weight[:3] = 0
            self.conv1.bias[:3] = -1.0
            self.conv1.bias[3:] = 100.0

    def forward(self, x):
        return self.fc(self.conv2(torch.relu(self.conv1(x))).flatten(1))


def test_inspect_critic_numbers_and_sparsity():
    critic = Sparse().train()
    report = inspect_critic(critic, [torch.randn(2, 3, 8, 8) for _ in range(3)], gains=True)
    rows = {r.name: r for r in report.layers}
    assert critic.training and all(not m._forward_pre_hooks for m in critic.modules())
    assert rows["conv1"].fed_by_input and not rows["conv2"].fed_by_input
    assert rows["conv2"].zero_fraction == pytest.approx(3 / 8) and rows["conv2"].samples == 6
    w = critic.conv2.weight
    assert rows["conv2"].exact_sigma == pytest.approx(float(conv_singular_value(w, (8, 8))))
    assert rows["conv2"].san_constant == pytest.approx(float(san_core.conv_constant(w, (8, 8))))
    assert rows["conv2"].sn_estimate == pytest.approx(float(sn_estimate(w)))
    assert rows["fc"].exact_sigma == pytest.approx(float(san_core.linear_constant(critic.fc.weight)))
    assert "moderately sparse" in report.recommendation
    assert report.gains == {"conv2": 1.0}
    assert "| conv2 | Conv2d | 8×8 |" in report.table()


class TwoDensities(nn.Module):
    """conv1 → ReLU (6 of 8 channels dead) → conv2 → ReLU (all alive) → conv3: two hidden convs, two densities."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular")
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular")
        self.conv3 = nn.Conv2d(8, 1, 3, padding=1, padding_mode="circular")
        with torch.no_grad():
            self.conv1.weight[:6] = 0
            self.conv1.bias[:6] = -1.0
            self.conv2.bias[:] = 5.0

    def forward(self, x):
        self.h1 = torch.relu(self.conv1(x))
        self.h2 = torch.relu(self.conv2(self.h1))
        return self.conv3(self.h2)


def test_inspect_gains_follow_effective_density_capped_by_exact_sigma():
    critic = TwoDensities()
    x = torch.randn(4, 3, 8, 8)
    report = inspect_critic(critic, [x], gains=True)
    rows = {r.name: r for r in report.layers}
    rho = {
        n: float(channel_sparsity(h).mean_effective_density) for n, h in (("conv2", critic.h1), ("conv3", critic.h2))
    }
    assert rho["conv2"] <= 2 / 8 + 1e-12 and rho["conv3"] > 0.5
    for name, value in rho.items():
        assert rows[name].effective_density == pytest.approx(value, rel=1e-9)
    cap = rows["conv3"].exact_sigma / rows["conv3"].san_constant
    assert report.gains == pytest.approx({"conv2": 1.0, "conv3": min(math.sqrt(rho["conv3"] / rho["conv2"]), cap)})
    assert report.gains["conv3"] > 1
    model = TwoDensities()
    san_core.SAN(model, layer_gains=report.gains, example_input=x).normalize_()
    assert float(san_core.conv_constant(model.conv3.weight, (8, 8))) == pytest.approx(
        1 / report.gains["conv3"], rel=1e-5
    )


def test_effective_density_bounds_a_circular_conv_per_output_channel():
    """``‖y_i‖ ≤ ‖W‖₀,∞ · √k_eff · ‖x‖`` on explicit float64 circulant matrices, for sparse and dense inputs."""
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(3, 6, 3, 3, generator=gen, dtype=torch.float64)
    size = (5, 4)
    A = operator(w, size)  # (3·20, 6·20)
    c = float(san_core.conv_constant(w, size))
    for active in (1, 2, 6):
        x = torch.zeros(6, *size, dtype=torch.float64)
        x[:active] = torch.randn(active, *size, generator=gen, dtype=torch.float64)
        y = (A @ x.flatten()).reshape(3, -1)
        norms = x.flatten(1).norm(dim=1)[None]
        k_eff = float(effective_density(norms)[0]) * 6
        assert k_eff <= active + 1e-9
        assert float(y.norm(dim=1).max()) <= c * math.sqrt(k_eff) * float(x.norm()) * (1 + 1e-12)


def test_cli_errors_and_outputs(tmp_path, capsys, monkeypatch):
    assert main(["--critic", "no_such_pkg.models:D", "--random-input", "1,3,8,8"]) == 2
    assert "cannot import module 'no_such_pkg.models'" in capsys.readouterr().err
    assert main(["--critic", "torch.nn:NoSuchLayer", "--random-input", "1,3,8,8"]) == 2
    assert "has no attribute 'NoSuchLayer'" in capsys.readouterr().err
    assert main(["--critic", "torch.nn:Conv2d", "--kwargs", "[1]", "--random-input", "1,3,8,8"]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
    assert main(["--critic", "nocolon", "--random-input", "1,3,8,8"]) == 2
    assert "expected 'package.module:name'" in capsys.readouterr().err
    kwargs = json.dumps({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1})
    base = ["--critic", "torch.nn:Conv2d", "--kwargs", kwargs, "--random-input", "2,3,8,8"]
    assert main([*base, "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "no file" in capsys.readouterr().err
    torch.save({"state_dict": {"weight": torch.zeros(1)}}, tmp_path / "bad.pt")
    assert main([*base, "--checkpoint", str(tmp_path / "bad.pt")]) == 2
    assert "does not fit the critic" in capsys.readouterr().err

    (tmp_path / "my_batches.py").write_text("import torch\ndef real():\n    return [torch.rand(2, 3, 8, 8)] * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save({"state_dict": Sparse().state_dict()}, tmp_path / "ok.pt")
    argv = ["--critic", f"{__name__}:Sparse", "--checkpoint", str(tmp_path / "ok.pt"), "--batches", "my_batches:real"]
    argv += ["--gains-out", str(tmp_path / "gains.json"), "--json", str(tmp_path / "report.json")]
    monkeypatch.setitem(sys.modules, __name__, sys.modules[__name__])
    assert main(argv) == 0
    assert "| conv2 | Conv2d | 8×8 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "gains.json").read_text()) == {"conv2": 1.0}
    assert json.loads((tmp_path / "report.json").read_text())["layers"][1]["zero_fraction"] == pytest.approx(3 / 8)
