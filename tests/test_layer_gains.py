"""``SAN(layer_gains={name: g_l})``: the named layers are divided by ``g_l · constant`` (beyond the paper).

After one normalization a layer with gain ``g_l`` has constant ``1 / g_l`` (the others 1); the gains are
validated before anything changes, replaced with ``set_layer_gains``, and saved/restored with the state.
"""

from __future__ import annotations

import math

import pytest
import torch
from _san_models import assert_same, batch, constants_of, critic, fingerprint

from san_core import SAN, apply_san, gain_from_sparsity


def test_named_layers_end_at_one_over_their_gain() -> None:
    model = critic().double()
    x, y = batch(8, 6)
    san = SAN(model, layer_gains={"conv2": 2.0, "head": 4.0}, example_input=(x.double(), y))
    before = constants_of(model, (8, 6))
    returned = san.normalize_()
    torch.testing.assert_close(returned["conv2"], 2.0 * before["conv2"], rtol=1e-12, atol=0)
    torch.testing.assert_close(returned["conv1"], before["conv1"], rtol=1e-12, atol=0)
    after = constants_of(model, (8, 6))
    expected = {"conv1": 1.0, "conv2": 0.5, "head": 0.25, "embed": 1.0}
    for name, value in expected.items():
        assert float(after[name]) == pytest.approx(value, rel=1e-9), name


def test_set_layer_gains_replaces_and_returns_the_previous_ones() -> None:
    model = critic().double()
    x, y = batch(8, 6)
    san = SAN(model, layer_gains={"conv1": 3.0}, example_input=(x.double(), y))
    assert san.set_layer_gains({"conv2": 1.5}) == {"conv1": 3.0}
    before = fingerprint(model)
    assert san.set_layer_gains(None) == {"conv2": 1.5}
    assert_same(model, before)  # only the next normalization uses them
    san.set_layer_gains({"conv2": 1.5})
    san.normalize_(force=True)
    after = constants_of(model, (8, 6))
    assert float(after["conv1"]) == pytest.approx(1.0, rel=1e-9)
    assert float(after["conv2"]) == pytest.approx(1 / 1.5, rel=1e-9)


def test_state_dict_carries_the_gains_into_a_fresh_san() -> None:
    x, y = batch(8, 6)
    a = SAN(critic(), layer_gains={"conv2": 2.5}, example_input=(x, y))
    state = a.state_dict()
    a.set_layer_gains({"conv2": 7.0})  # the saved state is a copy
    twin = critic()
    b = SAN(twin, example_input=(x, y))
    b.load_state_dict(state)
    assert b.config["layer_gains"] == {"conv2": 2.5}
    b.normalize_()
    assert float(constants_of(twin, (8, 6))["conv2"]) == pytest.approx(0.4, rel=1e-5)


@pytest.mark.parametrize(
    ("gains", "message"),
    [
        ({"conv9": 2.0}, "layer_gains names layers that are not selected: ['conv9']"),
        ({"conv1": 0.0}, "expected every layer gain to be a finite number > 0, got {'conv1': 0.0}"),
        ({"conv1": -1.0}, "expected every layer gain to be a finite number > 0, got {'conv1': -1.0}"),
        ({"conv1": math.nan}, "finite number > 0, got {'conv1': nan}"),
        ({"conv1": math.inf}, "finite number > 0, got {'conv1': inf}"),
        ({"conv1": "2"}, "finite number > 0, got {'conv1': '2'}"),
        ({"conv1": True}, "finite number > 0, got {'conv1': True}"),
        ([("conv1", 2.0)], "expected layer_gains to be a mapping {layer name: gain}, got list"),
    ],
)
def test_bad_gains_are_refused_with_the_model_untouched(gains: object, message: str) -> None:
    model = critic()
    before = fingerprint(model)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("{", r"\{")):
        apply_san(model, layer_gains=gains, example_input=batch())
    assert_same(model, before)  # padding switched back, no hooks left
    san = SAN(model, example_input=batch())
    with pytest.raises(ValueError, match="SAN: "):
        san.set_layer_gains(gains)  # type: ignore[arg-type]
    assert san.config["layer_gains"] == {}


def test_bad_gains_in_a_state_change_nothing() -> None:
    san = SAN(critic(), layer_gains={"conv1": 2.0}, example_input=batch())
    state = san.state_dict()
    state["config"] = {**state["config"], "layer_gains": {"nope": 2.0}}
    with pytest.raises(ValueError, match=r"not selected: \['nope'\]"):
        san.load_state_dict(state)
    assert san.config["layer_gains"] == {"conv1": 2.0}


def test_gain_from_sparsity_output_plugs_in() -> None:
    gains = gain_from_sparsity({"conv1": 0.25, "conv2": 1.0})
    model = critic().double()
    x, y = batch(8, 6)
    SAN(model, layer_gains=gains, example_input=(x.double(), y)).normalize_()
    assert float(constants_of(model, (8, 6))["conv2"]) == pytest.approx(0.5, rel=1e-9)  # √(1/0.25) = 2
