"""Bad input to ``SAN``/``apply_san``: one clear error naming what was expected and what came, model untouched.

The matrix covers construction (weights, lazy/meta layers, config values, map sizes, layer types,
a second application, spectral norm left in place, a failing or too small ``example_input``, a bare
layer); then weights corrupted after construction and a mismatched ``load_state_dict``.
"""

from __future__ import annotations

import pytest
import torch
from _san_models import SNCritic, assert_same, batch, critic, fingerprint
from torch import nn

from san_core import SAN, apply_san


def _corrupt(name: str, value: float):
    def build() -> nn.Module:
        model = SNCritic()
        with torch.no_grad():
            model.get_parameter(name).view(-1)[0] = value
        return model

    return build


def _meta() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, device="meta"), nn.Linear(4, 1, device="meta"))


def _named_conv(kernel: int, padding: int, mode: str = "zeros") -> nn.Module:
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(2, 2, kernel, padding=padding, padding_mode=mode))
    return model


def _apply(**kwargs):
    return lambda model: apply_san(model, **kwargs)


def _applied() -> nn.Module:
    """A model SAN is already applied to (the second application must leave the first one as it is)."""
    model = SNCritic()
    apply_san(model, "conv*", circular_padding=False)
    return model


TWICE = r"^apply_san: layer 'conv2' is already normalized by SAN\(3 layers of SNCritic, interval=1\); call its "
BARE = (
    r"^SAN: got a bare {}; layers are chosen by name inside a container, "
    r"so wrap it \(e\.g\. nn\.Sequential\(layer\)\)$"
)

BAD_INPUT = {  # id: (model, action, exception, message)
    "nan-weight": (_corrupt("conv2.weight", float("nan")), _apply(), ValueError, "'conv2' has NaN/Inf weights"),
    "inf-weight": (_corrupt("embed.weight", float("inf")), _apply(), ValueError, "'embed' has NaN/Inf weights"),
    "meta": (_meta, _apply(), ValueError, "'0' has a meta weight"),
    "lazy": (lambda: nn.Sequential(nn.LazyConv2d(4, 3)), _apply(), ValueError, "'0' is lazy and not initialized"),
    "ratio-0": (SNCritic, _apply(filter_ratio=0), ValueError, r"filter_ratio in \(0, 1\], got 0"),
    "ratio-1.5": (SNCritic, _apply(filter_ratio=1.5), ValueError, r"filter_ratio in \(0, 1\], got 1.5"),
    "interval-0": (SNCritic, _apply(interval=0), ValueError, "interval to be an int >= 1, got 0"),
    "gain-neg": (SNCritic, _apply(gain=-1), ValueError, "gain to be None or a finite number > 0, got -1"),
    "stride-mode": (SNCritic, _apply(stride_mode="bad"), ValueError, "stride_mode in .*got 'bad'"),
    "seed-str": (SNCritic, _apply(seed="1"), ValueError, "seed to be an int, got '1'"),
    "seed-float": (SNCritic, _apply(seed=1.5), ValueError, "seed to be an int, got 1.5"),
    "map-smaller-than-kernel": (
        lambda: _named_conv(3, 0),
        _apply(input_sizes={"conv": (2, 2)}),
        ValueError,
        r"'conv' cannot run on a \(2, 2\) map: kernel \(3, 3\)",
    ),
    "circular-pad-larger-than-map": (
        lambda: _named_conv(3, 3),
        _apply(input_sizes={"conv": (2, 2)}),
        ValueError,
        r"'conv' cannot run on a \(2, 2\) map.*padding \(3, 3\) \(circular\)",
    ),
    "circular-pad-larger-than-map-direct": (
        lambda: _named_conv(3, 3, "circular"),
        lambda model: SAN(model, input_sizes={"conv": (2, 2)}),
        ValueError,
        "'conv' cannot run on a",
    ),
    "unsupported-type": (critic, _apply(targets=["conv1", "bn"]), ValueError, "'bn' is BatchNorm2d; expected one of"),
    "twice": (_applied, _apply(targets=["conv2", "head"]), RuntimeError, TWICE + r"\.remove\(\) first$"),
    "twice-no-padding": (
        _applied,
        _apply(targets=["head", "conv2"], circular_padding=False),
        RuntimeError,
        TWICE + r"\.remove\(\) first$",
    ),
    "hook-sn-direct": (SNCritic, lambda model: SAN(model), ValueError, "'conv1' has hook-style.*strip_spectral_norm_"),
    "param-sn-direct": (
        SNCritic,
        lambda model: SAN(model, "head"),
        ValueError,
        "'head' has parametrization-style spectral norm; remove it first with strip_spectral_norm_",
    ),
    "example-input-fails": (
        SNCritic,
        _apply(example_input=(torch.randn(2, 5, 8, 8), torch.zeros(2, dtype=torch.long))),
        RuntimeError,
        "expected input.* to have 3 channels, but got 5",
    ),
    "example-input-too-small": (
        SNCritic,
        _apply(example_input=(torch.randn(2, 3, 1, 1), torch.zeros(2, dtype=torch.long))),
        ValueError,
        r"'conv2' cannot run on a \(1, 1\) map",
    ),
    "bare-conv-direct": (lambda: nn.Conv2d(3, 4, 3), lambda model: SAN(model), ValueError, BARE.format("Conv2d")),
    "bare-sn-linear": (lambda: nn.utils.spectral_norm(nn.Linear(3, 2)), _apply(), ValueError, BARE.format("Linear")),
    "bare-conv-in-ddp-style-wrapper": (
        lambda: nn.DataParallel(nn.Conv1d(2, 2, 3, padding=1)),
        _apply(),
        ValueError,
        BARE.format("Conv1d"),
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_raises_and_leaves_the_model_untouched(case: str) -> None:
    build, action, error, message = BAD_INPUT[case]
    model = build()
    before = fingerprint(model)
    with pytest.raises(error, match=message):
        action(model)
    assert_same(model, before)


@pytest.mark.parametrize(
    ("layer", "value"),
    [
        ("conv1", float("inf")),
        ("conv1", float("nan")),
        ("head", float("inf")),
        ("embed", float("inf")),
        ("head", float("nan")),
        ("embed", float("nan")),
    ],
)
def test_weight_corrupted_after_construction_rescales_no_layer(layer: str, value: float) -> None:
    model = critic()
    san = SAN(model, example_input=batch())
    san.normalize_(force=True)
    with torch.no_grad():
        model.get_parameter(f"{layer}.weight").view(-1)[0] = value
    before = fingerprint(model)
    with pytest.raises(ValueError, match=rf"^SAN: layers \['{layer}'\] have NaN/Inf weights; nothing was changed$"):
        san.normalize_()
    assert_same(model, before)


def test_every_corrupted_layer_is_named_at_once() -> None:
    model = critic()
    san = SAN(model, example_input=batch())
    with torch.no_grad():
        model.embed.weight[1, 2] = float("nan")
        model.conv2.weight[0, 0, 0, 0] = float("-inf")
    before = fingerprint(model)
    with pytest.raises(ValueError, match=r"^SAN: layers \['conv2', 'embed'\] have NaN/Inf weights"):
        san.normalize_(force=True)
    assert_same(model, before)


def test_nan_weight_fails_the_first_forward_normalization_without_rescaling() -> None:
    model = critic()
    san = SAN(model, normalize_at_first_forward=True)
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = float("nan")
    before = fingerprint(model)
    with pytest.raises(ValueError, match=r"^SAN: layers \['conv1'\] have NaN/Inf weights"):
        model(*batch())
    assert_same(model, before)
    assert san.state_dict()["pending"] == ["conv1", "conv2", "embed", "head"]  # still to do, nothing done


def test_power_vector_survives_a_rejected_normalization() -> None:
    model = critic()
    san = SAN(model, example_input=batch(), linear_method="power")
    san.normalize_()
    u = san.power_vectors["head"].clone()
    good = model.head.weight.detach().clone()
    with torch.no_grad():
        model.head.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^SAN: layers \['head'\] have NaN/Inf weights"):
        san.normalize_()
    assert torch.equal(san.power_vectors["head"], u)
    with torch.no_grad():
        model.head.weight.copy_(good)  # repaired: normalization must work again
    san.normalize_()
    assert all(bool(torch.isfinite(u).all()) for u in san.power_vectors.values())
    assert float(torch.linalg.svdvals(model.head.weight.detach())[0]) == pytest.approx(1.0, abs=1e-5)


def test_load_state_dict_with_other_layers_changes_nothing() -> None:
    model = critic()
    san = SAN(model, example_input=batch(), filter_ratio=0.5)
    san.normalize_()
    state = SAN(critic(), ["conv*", "head"], input_sizes={"conv1": (8, 8), "conv2": (8, 8)}).state_dict()
    state["layers"] = [*state["layers"], "extra"]
    own = san.state_dict()
    with pytest.raises(ValueError, match=r"missing from state \['embed'\], unexpected \['extra'\]"):
        san.load_state_dict(state)
    after = san.state_dict()
    assert after["calls"] == own["calls"] and torch.equal(after["generator"], own["generator"])
    with pytest.raises(ValueError, match="expected version 1, got 99"):
        san.load_state_dict({**own, "version": 99})
