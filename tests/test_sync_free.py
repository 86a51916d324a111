"""``SAN(sync_free=True)``: zero host syncs in steady state on the four benchmark critics, exact constants (vs float64
FFT/SVD references), NaN/Inf guarded on the device and reported at ``check()``/``state_dict()``/``describe()``,
``torch.compile(fullgraph=True)`` of the step, and the CUDA-graph option's gate."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from _san_models import batch, critic
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks._critics import CRITICS
from san_core import SAN, conv_constant

aten = torch.ops.aten
SYNC_OPS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.nonzero.default, aten.masked_select.default}
HOST_METHODS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


class SyncCounter(TorchDispatchMode):
    """Counts dispatched ops and host syncs: ``.item()``-style reads, ``nonzero``, ``masked_select``, boolean-mask
    indexing, device→host copies; and (CPU has no visible sync) the Python-level reads of a tensor's values."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        self.ops += 1
        if func in SYNC_OPS:
            self.syncs.append(str(func))
        elif func is aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1]):
            self.syncs.append("boolean index")
        elif func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0].device if func is aten.copy_.default else kwargs.get("device", src.device)
            if torch.device(dst).type == "cpu" and src.device.type != "cpu":
                self.syncs.append("device-to-host copy")
        return func(*args, **kwargs)


def count_syncs(fn: Any, monkeypatch: pytest.MonkeyPatch) -> SyncCounter:
    counter = SyncCounter()
    with monkeypatch.context() as patch:
        for method in HOST_METHODS:
            original = getattr(torch.Tensor, method)

            def spy(self, *args, _original=original, _method=method, **kwargs):  # type: ignore[no-untyped-def]
                counter.syncs.append(f"Tensor.{_method}")
                return _original(self, *args, **kwargs)

            patch.setattr(torch.Tensor, method, spy)
        with counter:
            fn()
    return counter


class Stack(nn.Module):
    """The layers of a benchmark critic as children (never run forward: SAN gets their input sizes)."""

    def __init__(self, name: str, shrink: int) -> None:
        super().__init__()
        self.sizes: dict[str, tuple[int, int]] = {}
        torch.manual_seed(0)
        for i, layer in enumerate(CRITICS[name]()):
            self.add_module(f"l{i}", layer.module())
            if layer.kind == "conv":
                self.sizes[f"l{i}"] = tuple(max(s // shrink, 2 * layer.k) for s in layer.size)  # type: ignore[assignment]


@pytest.mark.parametrize("name", list(CRITICS))
def test_steady_state_normalization_has_no_host_sync(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = Stack(name, shrink=4)
    san = SAN(model, input_sizes=model.sizes, sync_free=True)
    san.normalize_()  # warm-up: builds the plans (may sync)
    san.normalize_()
    counter = count_syncs(san.normalize_, monkeypatch)
    assert counter.syncs == [] and counter.ops > 0
    # and the step is exact: every layer ends with constant 1 (independent eager computation)
    for layer_name, size in model.sizes.items():
        conv = model.get_submodule(layer_name)
        value = conv_constant(conv.weight.double(), size, stride=conv.stride, method="fft")
        assert float(value) == pytest.approx(1.0, abs=1e-5), layer_name


def test_the_counter_sees_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eager path syncs (nonzero/.item() in pruning, the finite checks): the counter must see them."""
    model = Stack("spade", shrink=4)
    san = SAN(model, input_sizes=model.sizes, sync_free=False)
    san.normalize_()
    counter = count_syncs(san.normalize_, monkeypatch)
    assert any("nonzero" in s for s in counter.syncs) and any("item" in s or "dense" in s for s in counter.syncs)


# ----------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (7, 5), (100, 512), (64, 64)])
@pytest.mark.parametrize("module", ["linear", "embedding"])
def test_sync_free_sigma_matches_svdvals(shape: tuple[int, int], module: str) -> None:
    torch.manual_seed(1)
    layer = nn.Linear(shape[1], shape[0]) if module == "linear" else nn.Embedding(*shape)
    with torch.no_grad():
        layer.weight.mul_(3.0)
    expected = float(torch.linalg.svdvals(layer.weight.detach().double())[0])
    san = SAN(nn.Sequential(layer), sync_free=True)
    assert float(san.normalize_()["0"]) == pytest.approx(expected, rel=1e-6)
    assert float(torch.linalg.svdvals(layer.weight.detach().double())[0]) == pytest.approx(1.0, rel=1e-6)


def test_sync_free_matches_the_eager_path_step_for_step() -> None:
    eager, fast = critic(), critic()
    runs = [SAN(m, example_input=batch(), filter_ratio=0.5, linear_method="power", sync_free=s)
            for m, s in ((eager, False), (fast, True))]  # fmt: skip
    for _ in range(3):
        for model in (eager, fast):
            with torch.no_grad():
                model.conv2.weight.mul_(1.5)
        a, b = (san.normalize_() for san in runs)
        for name in a:
            assert float(b[name]) == pytest.approx(float(a[name]), rel=1e-6), name
    assert runs[0].config["sync_free"] is False and runs[1].sync_free_active()


def test_large_gram_falls_back_to_persistent_power_iterations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above MAX_GRAM: power iterations on the Gram matrix from a persistent vector, a lower bound on σ₁."""
    from san_core import _linear

    monkeypatch.setattr(_linear, "MAX_GRAM", 4)
    torch.manual_seed(2)
    layer = nn.Linear(30, 20)
    with torch.no_grad():  # a clear spectral gap: σ₁ = 10, the rest ≤ 1
        u, _, vh = torch.linalg.svd(torch.randn(20, 30), full_matrices=False)
        layer.weight.copy_(u @ torch.diag(torch.cat([torch.tensor([10.0]), torch.rand(19)])) @ vh)
    san = SAN(nn.Sequential(layer), sync_free=True)
    got = float(san.normalize_()["0"])
    assert san._engine.entries["0"].linear == "power"
    assert got <= 10.0 * (1 + 1e-6) and got == pytest.approx(10.0, rel=1e-6)


def test_resume_equals_uninterrupted_on_the_sync_free_path() -> None:
    """Plans are rebuilt after a resume (a warm-up call): equal to 1e-6, not bit for bit (see the README)."""

    def setup() -> tuple[nn.Module, SAN, torch.optim.Optimizer]:
        model = critic()
        san = SAN(model, example_input=batch(), sync_free=True, filter_ratio=0.5)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        san.attach(opt)
        return model, san, opt

    def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
        for step in steps:
            opt.zero_grad()
            model(*batch(seed=step)).square().mean().backward()
            opt.step()

    model, san, opt = setup()
    train(model, opt, range(3))
    ckpt = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "san": san.state_dict()})
    train(model, opt, range(3, 6))
    resumed, rsan, ropt = setup()
    resumed.load_state_dict(ckpt["model"])
    ropt.load_state_dict(ckpt["opt"])
    rsan.load_state_dict(ckpt["san"])
    train(resumed, ropt, range(3, 6))
    assert rsan.calls == san.calls == 6
    for key, value in model.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)


# ----------------------------------------------------------------------------------------------- the guard
@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
@pytest.mark.parametrize("where", ["check", "state_dict", "describe"])
def test_non_finite_weight_is_never_written_and_reported_later(form: str, where: str) -> None:
    model = critic()
    san = SAN(model, example_input=batch(), sync_free=True, form=form)
    san.normalize_()
    weight = san.layers["conv2"].parametrizations.weight.original if form == "reparametrize" else model.conv2.weight
    with torch.no_grad():
        weight.view(-1)[3] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.conv1.weight.mul_(2.0)
    san.normalize_()  # no error here: the sync-free path does not sync
    after = model.state_dict()
    for key in before:
        if key.startswith("conv2."):
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert int(torch.isnan(weight).sum()) == 1  # the NaN is the one put there, nothing more
    message = r"^SAN: layers \['conv2'\] had NaN/Inf weights at a sync-free normalization; those layers were left"
    with pytest.raises(ValueError, match=message):
        getattr(san, where)()
    san.check()  # reported once
    # the other layers were normalized (conv1.weight is the effective weight in both forms)
    assert float(conv_constant(model.conv1.weight, (8, 8))) == pytest.approx(1.0, abs=1e-5)


def test_overflowing_constant_is_guarded_and_reported() -> None:
    model = critic()
    san = SAN(model, example_input=batch(), sync_free=True)
    san.normalize_()
    with torch.no_grad():
        model.conv2.weight.fill_(3e38)
    san.normalize_()
    assert bool((model.conv2.weight == 3e38).all())
    with pytest.raises(ValueError, match=r"^SAN: NaN/Inf constant for layers \['conv2'\] \(overflow\?\) at a sync"):
        san.check()


@pytest.mark.parametrize("values", [(float("inf"),), (-float("inf"),), (float("inf"), -float("inf")), (float("nan"),)])
def test_every_kind_of_non_finite_weight_is_reported_as_a_weight(values: tuple[float, ...]) -> None:
    """The device-side check is ``‖0·w‖ ≠ 0``: +inf, -inf, both (whose sum would cancel to NaN) and NaN."""
    model = critic()
    san = SAN(model, example_input=batch(), sync_free=True)
    san.normalize_()
    with torch.no_grad():
        for i, value in enumerate(values):
            model.conv2.weight.view(-1)[5 + 7 * i] = value
    before = model.conv2.weight.detach().clone()
    san.normalize_()
    torch.testing.assert_close(model.conv2.weight.detach(), before, rtol=0, atol=0, equal_nan=True)
    with pytest.raises(ValueError, match=r"^SAN: layers \['conv2'\] had NaN/Inf weights at a sync-free"):
        san.check()


def test_huge_finite_float64_weights_are_normalized_not_flagged() -> None:
    """No overflow in the finite check (``0·w``, not ``‖w‖``) nor in the amplitude-domain pruning: 1e300 float64
    conv weights are finite and their constant exact (a Gram matrix of such a Linear weight would overflow)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3)).double()
    sizes = {"0": (12, 10)}
    san = SAN(model, input_sizes=sizes, sync_free=True)
    san.normalize_()
    with torch.no_grad():
        for layer in model:
            layer.weight.mul_(1e300)
    expected = float(conv_constant(model[0].weight / 1e300, sizes["0"], method="fft")) * 1e300  # (|DFT|² overflows)
    assert float(san.normalize_()["0"]) == pytest.approx(expected, rel=1e-6)
    san.check()  # nothing reported
    assert float(conv_constant(model[0].weight, sizes["0"], method="fft")) == pytest.approx(1.0, rel=1e-6)


def test_first_call_checks_eagerly_and_cpu_default_is_eager() -> None:
    model = critic()
    san = SAN(model, example_input=batch(), sync_free=True)
    with torch.no_grad():
        model.conv1.weight.view(-1)[0] = float("inf")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"^SAN: layers \['conv1'\] have NaN/Inf weights; nothing was changed$"):
        san.normalize_()  # the warm-up call syncs anyway: it refuses at once
    for key, value in before.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, equal_nan=True)
    assert san.calls == 0
    assert not SAN(critic(), example_input=batch()).sync_free_active()  # CPU weights, sync_free=None: eager


def test_apply_san_passes_sync_free_and_form_and_remove_is_exact() -> None:
    from _san_models import SNCritic, assert_same, fingerprint

    from san_core import apply_san

    model = SNCritic()
    before = fingerprint(model)
    san = apply_san(model, example_input=batch(), sync_free=True, form="reparametrize")
    for _ in range(2):
        constants = san.normalize_()
    assert san.sync_free_active() and set(constants) == set(san.layers)
    assert float(torch.linalg.svdvals(model.head.weight.detach().double())[0]) == pytest.approx(1.0, rel=1e-6)
    san.remove()
    assert_same(model, before)


def test_tied_weight_is_divided_once_by_the_largest_constant() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    model[1].weight = model[0].weight
    sizes = {"0": (8, 8), "1": (16, 16)}
    san = SAN(model, input_sizes=sizes, sync_free=True)
    for _ in range(2):
        constants = san.normalize_()
    assert float(constants["0"]) == float(constants["1"])
    values = [float(conv_constant(model[0].weight.double(), size)) for size in sizes.values()]
    assert max(values) == pytest.approx(1.0, rel=1e-6)  # not 1/c: one division


def test_a_swapped_weight_storage_is_re_planned() -> None:
    model = critic()
    san = SAN(model, example_input=batch(), sync_free=True)
    san.normalize_()
    assert san._engine.stale() == []
    model.conv1.weight.data = model.conv1.weight.data.clone() * 3  # same Parameter, new storage
    assert san._engine.stale() == ["conv1"]
    san.normalize_()
    assert float(conv_constant(model.conv1.weight, (8, 8))) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------------ compile / graph
def test_compiled_step_fullgraph_matches_the_eager_step() -> None:
    models = [critic(), critic()]
    # linear_method="power" here (the slow tests below cover the default σ₁ paths)
    sans = [SAN(m, example_input=batch(), sync_free=True, compile_step=c, linear_method="power")
            for m, c in zip(models, (False, True))]  # fmt: skip
    for _ in range(2):
        for model in models:
            with torch.no_grad():
                model.conv2.weight.mul_(1.5)
        a, b = (san.normalize_() for san in sans)
        for name in a:
            assert float(b[name]) == pytest.approx(float(a[name]), rel=1e-6), name
    assert sans[1]._engine._compiled is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CRITICS))
def test_compiled_step_on_the_benchmark_critics(name: str) -> None:
    model = Stack(name, shrink=4)
    san = SAN(model, input_sizes=model.sizes, sync_free=True, compile_step=True)
    for _ in range(2):
        san.normalize_()
    for layer_name, size in model.sizes.items():
        conv = model.get_submodule(layer_name)
        assert float(conv_constant(conv.weight, size, stride=conv.stride)) == pytest.approx(1.0, abs=1e-5)


def test_option_errors() -> None:
    with pytest.raises(ValueError, match=r"^SAN: expected sync_free to be None or a bool, got 'yes'$"):
        SAN(critic(), sync_free="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"need sync_free=None or True$"):
        SAN(critic(), sync_free=False, compile_step=True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^SAN: cuda_graph=True needs CUDA, but torch.cuda.is_available\(\)"):
            SAN(critic(), cuda_graph=True)


@pytest.mark.gpu
@pytest.mark.parametrize("ratio", [1.0, 0.25])
def test_cuda_graph_replays_exact_constants_without_syncs(ratio: float) -> None:
    """Warm-up, capture, replays against the eager CPU path (same seed). With filter_ratio < 1 every replay uses
    that step's subsets (the eager path's draws): a replay of the capture-time subsets would give constants ≈ 1 on
    the already normalized layers, where the eager path, drawing new subsets, gives others."""
    model = Stack("sngan_cnn", shrink=1).cuda()
    san = SAN(model, input_sizes=model.sizes, cuda_graph=True, filter_ratio=ratio, seed=3)
    reference = copy.deepcopy(model).cpu()
    ref_san = SAN(reference, input_sizes=model.sizes, sync_free=False, filter_ratio=ratio, seed=3)
    for _ in range(5):
        for m in (model, reference):
            with torch.no_grad():
                m.l1.weight.mul_(1.5)
        got, expected = san.normalize_(), ref_san.normalize_()
        for name in expected:
            assert float(got[name]) == pytest.approx(float(expected[name]), rel=1e-5), name
    assert san._engine._graph is not None
    assert any(s is not None for s in san._engine._graph_subsets) == (ratio < 1)
    for (name, got_w), want in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(got_w.cpu(), want, rtol=1e-5, atol=1e-6, msg=name)
    torch.cuda.set_sync_debug_mode("error")
    try:
        san.normalize_()
    finally:
        torch.cuda.set_sync_debug_mode("default")
