"""Issue 14 item 2: SAN.load_state_dict validates the whole state with the constructor's checks, then applies it all
or nothing; recorded input sizes survive a state round trip (and version-1 states without them still load)."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import pytest
import torch
from torch import Tensor, nn

from san_core import SAN


def critic() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 4, 4, stride=2, padding=1, padding_mode="circular"),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 1),
    )


def snapshot(san: SAN) -> dict[str, Any]:
    """Everything load_state_dict may change, and the model's weights (cloned)."""
    return {
        "config": dict(san.config),
        "calls": san.calls,
        "generator": san.generator.get_state().clone(),
        "vectors": {n: u.clone() for n, u in san.power_vectors.items()},
        "sizes": dict(san.input_sizes),
        "seen": {n: list(s) for n, s in san.seen_sizes.items()},
        "pending": set(san._pending),
        "model": {k: v.clone() for k, v in san.module.state_dict().items()},
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def eq(x: Any, y: Any) -> bool:
        if isinstance(x, Tensor):
            return isinstance(y, Tensor) and x.dtype == y.dtype and torch.equal(x, y)
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(eq(x[k], y[k]) for k in x)
        return bool(x == y)

    return eq(a, b)


def trained_state(form: str = "rescale") -> dict[str, Any]:
    other = critic()
    san = SAN(other, interval=3, filter_ratio=0.5, seed=7, linear_method="power", form=form, sync_free=False)
    other(torch.randn(2, 3, 8, 8))
    for _ in range(5):
        san.normalize_()
    return san.state_dict()


def bad_generator(s: dict) -> None:
    s["generator"] = torch.zeros(3, dtype=torch.uint8)


def bad_generator_type(s: dict) -> None:
    s["generator"] = [1, 2, 3]


def unknown_vector(s: dict) -> None:
    s["power_vectors"] = {**s["power_vectors"], "nope": torch.ones(1)}


def vector_shape(s: dict) -> None:
    s["power_vectors"] = {"4": torch.ones(7)}


def missing_calls(s: dict) -> None:
    del s["calls"]


def interval_zero(s: dict) -> None:
    s["config"] = {**s["config"], "interval": 0}


def ratio_five(s: dict) -> None:
    s["config"] = {**s["config"], "filter_ratio": 5}


def bogus_stride(s: dict) -> None:
    s["config"] = {**s["config"], "stride_mode": "bogus"}


def unknown_config(s: dict) -> None:
    s["config"] = {**s["config"], "colour": "red"}


def negative_calls(s: dict) -> None:
    s["calls"] = -1


def size_of_linear(s: dict) -> None:
    s["input_sizes"] = {**s["input_sizes"], "4": (8, 8)}


def exact_with_odd_size(s: dict) -> None:
    s["config"] = {**s["config"], "stride_mode": "exact"}
    s["input_sizes"] = {**s["input_sizes"], "2": (7, 7)}
    s["seen_sizes"] = {"0": [(8, 8)], "2": [(8, 8), (7, 7)]}


CASES: list[tuple[Callable[[dict], None], str]] = [
    (bad_generator, r"'generator' to be a torch.uint8 tensor of shape \(\d+,\), got torch.uint8 \(3,\)"),
    (bad_generator_type, r"'generator' to be a torch.uint8 tensor"),
    (unknown_vector, r"'power_vectors' names \['nope'\], which are not selected Linear/Embedding layers"),
    (vector_shape, r"power_vectors\['4'\]: expected a float tensor of shape \(1,\), got torch.float32 \(7,\)"),
    (missing_calls, r"the state has no key 'calls'"),
    (interval_zero, r"invalid config in the state: SAN: expected interval to be an int >= 1, got 0"),
    (ratio_five, r"invalid config in the state: SAN: expected filter_ratio in \(0, 1\], got 5"),
    (bogus_stride, r"invalid config in the state: SAN: expected stride_mode in \('paper', 'exact'\), got 'bogus'"),
    (unknown_config, r"unknown config keys \['colour'\]"),
    (negative_calls, r"expected 'calls' to be an int >= 0, got -1"),
    (size_of_linear, r"'input_sizes' names \['4'\], which are not selected ConvNd layers"),
    (exact_with_odd_size, r"layer '2' sees a \(7, 7\) input, not divisible by its stride \(2, 2\)"),
]


@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
@pytest.mark.parametrize("corrupt, message", CASES, ids=[c.__name__ for c, _ in CASES])
def test_a_bad_state_changes_nothing(corrupt: Callable[[dict], None], message: str, form: str) -> None:
    state = trained_state(form)
    corrupt(state)
    model = critic()
    san = SAN(model, sync_free=False, form=form)
    model(torch.randn(1, 3, 8, 8))
    san.normalize_()
    before = snapshot(san)
    scales = {n: m.s.clone() for n, m in san.scales.items()}
    with pytest.raises(ValueError, match=message):
        san.load_state_dict(state)
    assert same(snapshot(san), before)
    assert all(torch.equal(san.scales[n].s, s) for n, s in scales.items())


def test_a_good_state_loads_and_resumes_identically() -> None:
    state = trained_state()
    model = critic()
    san = SAN(model, sync_free=False)
    san.load_state_dict(state)
    assert san.calls == 5 and san.config["interval"] == 3 and san.config["seed"] == 7
    assert san.config["filter_ratio"] == 0.5 and torch.equal(san.generator.get_state(), state["generator"])


@pytest.mark.parametrize("sync_free", [False, True])
def test_recorded_sizes_survive_the_state_and_version_1_states_load(sync_free: bool) -> None:
    model = critic()
    san = SAN(model, sync_free=sync_free)
    with pytest.warns(UserWarning, match="now sees"):
        model(torch.randn(1, 3, 8, 8))
        model[0](torch.randn(1, 3, 6, 6))
    assert san.sizes_of("0") == [(6, 6), (8, 8)]
    state = san.state_dict()
    assert state["version"] == 1 and state["seen_sizes"]["0"] == [(8, 8), (6, 6)]
    fresh = SAN(critic(), sync_free=sync_free)
    fresh.load_state_dict(state)
    assert fresh.sizes_of("0") == [(6, 6), (8, 8)] and fresh.input_sizes["0"] == (6, 6)
    ours, theirs = san.normalize_(force=True), fresh.normalize_(force=True)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)
    old = {k: v for k, v in state.items() if k != "seen_sizes"}  # a version-1 state saved before seen_sizes
    older = SAN(critic(), sync_free=sync_free)
    older.load_state_dict(old)
    assert older.sizes_of("0") == [(6, 6)] and older.sizes_of("2") == [(8, 8)]
    assert san.forget_sizes() == {"0": [(8, 8)]}  # the Linear layer '4' has no sizes to forget
    after_forget = SAN(critic(), sync_free=sync_free)
    after_forget.load_state_dict(san.state_dict())
    assert after_forget.sizes_of("0") == [(6, 6)] and "4" not in after_forget.seen_sizes


def test_config_holds_every_option_and_the_run_time_choices_stay_out_of_the_state() -> None:
    setup = {"module", "targets", "exclude", "input_sizes", "example_input", "normalize_at_first_forward"}
    options = set(inspect.signature(SAN).parameters) - setup
    model = critic()
    san = SAN(model, interval=2, filter_ratio=0.5, seed=3, layer_gains={"0": 2.0}, sync_free=True, compile_step=False)
    assert set(san.config) == options  # every constructor option but the selection/size sources
    assert (san.config["sync_free"], san.config["compile_step"], san.config["cuda_graph"]) == (True, False, False)
    twin_model = critic()
    twin = SAN(twin_model, **san.config)  # the config rebuilds an equivalent SAN
    assert twin.config == san.config
    x = torch.randn(2, 3, 8, 8)
    model(x), twin_model(x)
    ours, theirs = san.normalize_(force=True), twin.normalize_(force=True)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[n], theirs[n]) for n in ours)
    state = san.state_dict()
    assert not {"sync_free", "compile_step", "cuda_graph"} & set(state["config"])
    eager = SAN(critic(), sync_free=False)
    runtime = {"sync_free": True, "compile_step": True, "cuda_graph": True}  # a state that carries them anyway
    eager.load_state_dict({**state, "config": {**state["config"], **runtime}})
    assert (eager.config["sync_free"], eager.config["compile_step"], eager.config["cuda_graph"]) == (False,) * 3
    assert eager.config["interval"] == 2 and eager.config["layer_gains"] == {"0": 2.0}
    older = SAN(critic(), sync_free=True)  # a state saved before compile_step/cuda_graph were in the config
    older.load_state_dict(state)
    assert older.config["compile_step"] is False and older.config["filter_ratio"] == 0.5 and older.calls == 0
