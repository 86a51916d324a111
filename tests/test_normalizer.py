"""``SAN.normalize_``: W ← W / ‖W‖₀,∞ in place (σ₁ for Linear/Embedding), every ``interval``-th call.

Sections: normalization of every layer kind; interval and ``force``; where input sizes come from;
normalization at first forward; a failed call (unknown size, NaN/Inf weight, overflow) advances
nothing: not the call counter, the subset generator, nor the power vectors.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _san_models import (
    assert_same,
    assert_same_progress,
    batch,
    constants_of,
    critic,
    fingerprint,
    san_progress,
)
from torch import Tensor, nn

from san_core import SAN, conv_constant


def test_normalize_divides_by_the_constants_and_leaves_biases() -> None:
    model = critic()
    san = SAN(model, example_input=batch(8, 6))
    before = constants_of(model, (8, 6))
    biases = {n: model.get_parameter(f"{n}.bias").detach().clone() for n in ("conv1", "conv2", "head")}
    returned = san.normalize_()
    assert set(returned) == set(before)
    for name, value in before.items():
        torch.testing.assert_close(returned[name], value, rtol=1e-6, atol=0)
        assert float(value) != pytest.approx(1.0, abs=1e-3)  # the rescale is visible
    for name, value in constants_of(model, (8, 6)).items():
        assert float(value) == pytest.approx(1.0, abs=1e-5), name
    for name, bias in biases.items():
        assert torch.equal(model.get_parameter(f"{name}.bias"), bias)
    assert [d["constant"] for d in san.describe()] == [float(returned[n]) for n in san.layers]


class Zoo(nn.Module):
    """Every supported layer kind, with dilation, groups and strides; never run forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.c1 = nn.Conv1d(3, 4, 5, dilation=2, padding=4)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, groups=2, padding=1)
        self.c3 = nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1))
        self.t2 = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
        self.lin = nn.Linear(7, 5)
        self.emb = nn.Embedding(9, 6)


ZOO_SIZES = {"c1": (12,), "c2": (8, 6), "c3": (2, 4, 6), "t2": (4, 6)}


@pytest.mark.parametrize("stride_mode", ["paper", "exact"])
def test_every_layer_kind_ends_with_constant_one(stride_mode: str) -> None:
    zoo = Zoo()
    san = SAN(zoo, input_sizes=ZOO_SIZES, stride_mode=stride_mode)
    san.normalize_()
    for name, size in ZOO_SIZES.items():
        conv = zoo.get_submodule(name)
        value = conv_constant(
            conv.weight,
            size,
            stride=conv.stride,
            dilation=conv.dilation,
            groups=conv.groups,
            transposed=isinstance(conv, nn.ConvTranspose2d),
            stride_mode=stride_mode,
        )
        assert float(value) == pytest.approx(1.0, abs=1e-5), name
    for layer in (zoo.lin, zoo.emb):
        assert float(torch.linalg.svdvals(layer.weight.detach())[0]) == pytest.approx(1.0, abs=1e-5)


def test_interval_normalizes_every_nth_call_and_force_is_not_counted() -> None:
    model = critic()
    san = SAN(model, interval=3, input_sizes={"conv1": (8, 8), "conv2": (8, 8)})
    changed_at = []
    for call in range(1, 8):
        with torch.no_grad():
            model.conv1.weight.mul_(1.5)  # un-normalize, so every normalization shows
        before = model.conv1.weight.detach().clone()
        out = san.normalize_()
        if not torch.equal(before, model.conv1.weight):
            changed_at.append(call)
            assert set(out) == set(san.layers)
        else:
            assert out == {}
    assert changed_at == [3, 6] and san.calls == 7
    with torch.no_grad():
        model.conv1.weight.mul_(1.5)
    assert set(san.normalize_(force=True)) == set(san.layers)
    assert san.calls == 7
    assert float(conv_constant(model.conv1.weight, (8, 8))) == pytest.approx(1.0, abs=1e-5)


def test_sizes_from_example_input_restore_training_flags_and_bn_stats() -> None:
    model = critic()
    model.train()
    model.bn.eval()  # a mixed pattern: each flag must come back as it was
    flags = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    san = SAN(model, example_input=batch(10, 6))
    assert san.input_sizes == {"conv1": (10, 6), "conv2": (10, 6)}
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN stats, weights


def test_sizes_from_forward_pre_hooks_and_explicit_sizes() -> None:
    model = critic()
    san = SAN(model)
    assert san.input_sizes == {}
    model(*batch(12, 10))
    assert san.input_sizes == {"conv1": (12, 10), "conv2": (12, 10)}
    model(*batch(6, 8))  # the latest size wins
    assert san.input_sizes == {"conv1": (6, 8), "conv2": (6, 8)}
    explicit = SAN(critic(), input_sizes={"conv1": [5, 7], "conv2": (5, 7)})
    assert explicit.input_sizes == {"conv1": (5, 7), "conv2": (5, 7)}
    with pytest.raises(ValueError, match="input_sizes names 'head', which is not a selected conv"):
        SAN(critic(), input_sizes={"head": (1, 1)})


def test_unknown_size_is_a_clear_error_and_changes_no_weight() -> None:
    model = critic()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    san = SAN(model, input_sizes={"conv2": (8, 8)})
    with pytest.raises(RuntimeError, match=r"input size of conv 'conv1' is unknown.*example_input=.*input_sizes="):
        san.normalize_()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_normalize_at_first_forward() -> None:
    x, y = batch()
    model = critic()
    reference = copy.deepcopy(model)
    SAN(reference, input_sizes={"conv1": (8, 8), "conv2": (8, 8)}).normalize_()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    san = SAN(model, normalize_at_first_forward=True, example_input=(x, y))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # the probe does not normalize
    out = model(x, y)
    assert torch.equal(out, reference(x, y))
    for name, value in constants_of(model, (8, 8)).items():
        assert float(value) == pytest.approx(1.0, abs=1e-5), name
    weights = {n: model.get_parameter(f"{n}.weight").detach().clone() for n in san.layers}
    model(x, y)  # only the first use normalizes
    assert all(torch.equal(w, model.get_parameter(f"{n}.weight")) for n, w in weights.items())
    assert san.calls == 0


# ------------------------------------------------------------------------------------- failed calls
def stateful(interval: int, sizes: dict | None = None) -> tuple[nn.Module, SAN]:
    """A SAN whose calls draw kernel subsets (``r = 0.5``) and step persistent power vectors ``u``."""
    model = critic()
    sizes = {"conv1": (8, 8), "conv2": (8, 8)} if sizes is None else sizes
    return model, SAN(model, input_sizes=sizes, filter_ratio=0.5, linear_method="power", interval=interval)


def assert_same_run(model: nn.Module, san: SAN, twin: nn.Module, twin_san: SAN) -> None:
    """The run that had a failed call ends exactly where the one without it does."""
    assert san.calls == twin_san.calls
    for key, value in twin.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("interval", [1, 2])
def test_failed_call_on_unknown_size_advances_nothing(interval: int) -> None:
    runs = [stateful(interval, sizes={"conv2": (8, 8)}) for _ in range(2)]
    for _, san in runs:
        san.constants(["conv2", "head", "embed"])  # a subset drawn and power vectors made: state to keep
        for _ in range(interval - 1):
            assert san.normalize_() == {}  # a skipped call is counted
    (model, san), (twin, twin_san) = runs
    assert san.power_vectors and san.calls == interval - 1
    before, progress = fingerprint(model), san_progress(san)
    with pytest.raises(RuntimeError, match=r"^SAN: input size of conv 'conv1' is unknown"):
        san.normalize_()
    assert_same(model, before)
    assert_same_progress(san, progress)
    for m, s in runs:  # now the size is known: both runs normalize on this call, identically
        m(*batch())
        assert set(s.normalize_()) == set(s.layers)
    assert_same_run(model, san, twin, twin_san)


@pytest.mark.parametrize("layer", ["conv2", "head", "embed"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_failed_call_on_a_non_finite_weight_advances_nothing(layer: str, value: float) -> None:
    runs = [stateful(interval=1) for _ in range(2)]
    for _, san in runs:
        san.normalize_()
    (model, san), (twin, twin_san) = runs
    weight = model.get_parameter(f"{layer}.weight")
    good = weight.detach().clone()
    with torch.no_grad():
        weight.view(-1)[-1] = value  # the last entry: with u it touches every output of the power step
    before, progress = fingerprint(model), san_progress(san)
    with pytest.raises(ValueError, match=rf"^SAN: layers \['{layer}'\] have NaN/Inf weights; nothing was changed$"):
        san.normalize_()
    assert_same(model, before)
    assert_same_progress(san, progress)
    with torch.no_grad():
        weight.copy_(good)  # repaired: the next call is the one the failed call would have been
    san.normalize_()
    twin_san.normalize_()
    assert_same_run(model, san, twin, twin_san)
    assert all(bool(torch.isfinite(u).all()) for u in san.power_vectors.values())


def overflow(model: nn.Module) -> Tensor:
    """Make conv2's constant overflow float32 with finite weights (the check after computing catches it)."""
    weight = model.get_parameter("conv2.weight")
    good = weight.detach().clone()
    with torch.no_grad():
        weight.fill_(3e38)
    assert bool(torch.isfinite(weight).all())
    return good


def test_failed_call_on_an_overflowing_constant_rolls_back_subsets_and_power_vectors() -> None:
    runs = [stateful(interval=1) for _ in range(2)]
    for _, san in runs:
        san.normalize_()
    (model, san), (twin, twin_san) = runs
    good = overflow(model)
    before, progress = fingerprint(model), san_progress(san)
    # conv1's subset is drawn and head's/embed's u stepped before conv2's inf is seen: all rolled back
    with pytest.raises(ValueError, match=r"^SAN: NaN/Inf constant for layers \['conv2'\] \(overflow\?\)"):
        san.normalize_()
    assert_same(model, before)
    assert_same_progress(san, progress)
    with torch.no_grad():
        model.get_parameter("conv2.weight").copy_(good)
    san.normalize_()
    twin_san.normalize_()
    assert_same_run(model, san, twin, twin_san)


def test_failed_first_call_leaves_no_power_vector_behind() -> None:
    model, san = stateful(interval=1)
    overflow(model)
    progress = san_progress(san)
    with pytest.raises(ValueError, match="NaN/Inf constant"):
        san.normalize_()
    assert_same_progress(san, progress)
