"""``strip_spectral_norm_``/``convert_spectral_norm_state_dict``: torch SN removed in place, exact inverse."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils import spectral_norm as hook_sn
from torch.nn.utils.parametrizations import spectral_norm as param_sn
from torch.nn.utils.spectral_norm import SpectralNorm

from san_core import (
    apply_san,
    convert_spectral_norm_state_dict,
    spectral_norm_style,
    strip_spectral_norm_,
    to_reparametrized_keys,
)

LAYERS: dict[str, tuple[Callable[[], nn.Module], Callable[[], Tensor]]] = {
    "conv": (lambda: nn.Conv2d(3, 5, 3, padding=1), lambda: torch.randn(2, 3, 6, 6)),
    "linear": (lambda: nn.Linear(6, 4), lambda: torch.randn(3, 6)),
    "embedding": (lambda: nn.Embedding(7, 4), lambda: torch.tensor([[0, 3, 6], [1, 1, 5]])),
}
STYLES = {"hook": hook_sn, "parametrization": param_sn}
ORIGINAL = {"hook": "weight_orig", "parametrization": "parametrizations.weight.original"}
U_KEY = {"hook": "weight_u", "parametrization": "parametrizations.weight.0._u"}
CASES = [(kind, style) for kind in LAYERS for style in STYLES]


def _sn_model(kind: str, style: str) -> tuple[nn.Sequential, Tensor]:
    """A one-layer model with SN whose ``u`` has been updated once (a training forward)."""
    torch.manual_seed(0)
    make, data = LAYERS[kind]
    model = nn.Sequential(STYLES[style](make()))
    x = data()
    model.train()
    model(x)
    return model, x


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal_state(model: nn.Module, snapshot: dict[str, Tensor]) -> bool:
    state = model.state_dict()
    return list(state) == list(snapshot) and all(torch.equal(state[k], v) for k, v in snapshot.items())


def _plain_forward(layer: nn.Module, x: Tensor) -> Tensor:
    """The layer's computation with its ``weight`` Parameter used as is (no normalization)."""
    if isinstance(layer, nn.Conv2d):
        return nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    if isinstance(layer, nn.Linear):
        return nn.functional.linear(x, layer.weight, layer.bias)
    return nn.functional.embedding(x, layer.weight)


@pytest.mark.parametrize(("kind", "style"), CASES)
def test_strip_keeps_the_original_parameter_and_removes_all_sn(kind: str, style: str) -> None:
    model, x = _sn_model(kind, style)
    layer = model[0]
    plain_cls = type(layer) if style == "hook" else type(layer).__bases__[0]
    original = model.get_parameter(f"0.{ORIGINAL[style]}")
    values = original.detach().clone()
    u = model.get_buffer(f"0.{U_KEY[style]}")
    u_before = u.clone()
    assert spectral_norm_style(layer) == style

    record = strip_spectral_norm_(model)
    assert record.names == ["0"]
    assert layer.weight is original and layer._parameters["weight"] is original
    assert torch.equal(layer.weight, values)
    assert type(layer) is plain_cls and spectral_norm_style(layer) is None
    assert not parametrize.is_parametrized(layer)
    assert not any(isinstance(h, SpectralNorm) for h in layer._forward_pre_hooks.values())
    assert not layer._state_dict_hooks and not layer._load_state_dict_pre_hooks
    expected_keys = {"0.weight"} if kind == "embedding" else {"0.weight", "0.bias"}
    assert set(model.state_dict()) == expected_keys
    y = model(x)  # training forward: no power iteration any more, weight used un-normalized
    assert torch.equal(u, u_before)
    assert torch.equal(y, _plain_forward(layer, x))
    # the stripped layer loads a plain checkpoint
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, strict=True)


@pytest.mark.parametrize(("kind", "style"), CASES)
def test_optimizer_built_before_strip_keeps_stepping_the_same_tensor(kind: str, style: str) -> None:
    model, x = _sn_model(kind, style)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(x).square().mean().backward()
    opt.step()
    original = model.get_parameter(f"0.{ORIGINAL[style]}")
    exp_avg = opt.state[original]["exp_avg"]
    strip_spectral_norm_(model)
    opt.zero_grad()
    before = original.detach().clone()
    model(x).square().mean().backward()
    assert original.grad is not None and bool(original.grad.abs().sum() > 0)
    opt.step()
    assert model[0].weight is original
    assert not torch.equal(original, before)  # the optimizer updated the live weight
    assert opt.state[original]["exp_avg"] is exp_avg and float(opt.state[original]["step"]) == 2.0
    assert len(opt.state) == len(list(model.parameters()))  # no orphan state


@pytest.mark.parametrize(("kind", "style"), CASES)
def test_restore_is_an_exact_inverse(kind: str, style: str) -> None:
    model, x = _sn_model(kind, style)
    layer = model[0]
    cls = type(layer)
    user_hook = layer.register_forward_pre_hook(lambda mod, args: None)
    hooks_before = list(layer._forward_pre_hooks)
    snapshot = _snapshot(model)
    ids = {n: id(p) for n, p in model.named_parameters()}
    model.eval()
    y_before = model(x)

    record = strip_spectral_norm_(model)
    assert list(layer._forward_pre_hooks) == [user_hook.id]  # other hooks are kept
    assert record.restore() == ["0"]
    assert record.names == []
    assert type(layer) is cls
    assert spectral_norm_style(layer) == style
    assert _equal_state(model, snapshot)
    assert {n: id(p) for n, p in model.named_parameters()} == ids
    assert list(layer._forward_pre_hooks) == hooks_before
    assert torch.equal(model(x), y_before)
    # SN works again: a training forward runs the power iteration
    u = model.get_buffer(f"0.{U_KEY[style]}")
    u_before = u.clone()
    model.train()
    model(x)
    assert not torch.equal(u, u_before)
    # and a restored model loads its own SN checkpoint strictly
    model.load_state_dict(snapshot, strict=True)


@pytest.mark.parametrize("style", STYLES)
def test_convert_state_dict_loads_into_a_plain_model(style: str) -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.my_weight_u = nn.Parameter(torch.randn(3))
            self.weight_scale = nn.Parameter(torch.randn(2))

    def build(sn: Callable[[nn.Module], nn.Module]) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Sequential(sn(nn.Conv2d(3, 5, 3)), sn(nn.Linear(4, 2))), sn(nn.Embedding(6, 4)), Odd(), nn.Linear(2, 2)
        )

    sn_model = build(STYLES[style])
    for layer in (sn_model[0][0], sn_model[0][1], sn_model[1]):  # one power iteration so u/v are non-trivial
        layer.train()
        if isinstance(layer, nn.Embedding):
            layer(torch.tensor([0, 1]))
        elif isinstance(layer, nn.Linear):
            layer(torch.randn(2, 4))
        else:
            layer(torch.randn(1, 3, 5, 5))
    state = sn_model.state_dict()
    converted = convert_spectral_norm_state_dict(state)
    plain = build(lambda m: m)
    assert set(converted) == set(plain.state_dict())
    plain.load_state_dict(converted, strict=True)
    for prefix in ("0.0.", "0.1.", "1."):
        assert torch.equal(plain.get_parameter(prefix + "weight"), state[prefix + ORIGINAL[style]])
        assert converted[prefix + "weight"] is state[prefix + ORIGINAL[style]]  # shared, not copied
    assert converted["2.my_weight_u"] is state["2.my_weight_u"]
    assert converted["2.weight_scale"] is state["2.weight_scale"]
    assert converted["3.weight"] is state["3.weight"]
    assert "0.0.bias" in converted and "1.weight_orig" not in converted
    assert convert_spectral_norm_state_dict(converted) == converted  # idempotent on a plain state dict


def test_chained_parametrization_is_refused_and_nothing_changes() -> None:
    class Scale(nn.Module):
        def forward(self, w: Tensor) -> Tensor:
            return 2 * w

    torch.manual_seed(0)
    model = nn.Sequential(hook_sn(nn.Linear(4, 4)), param_sn(nn.Linear(4, 4)), param_sn(nn.Linear(4, 4)))
    parametrize.register_parametrization(model[1], "weight", Scale())
    parametrize.register_parametrization(model[2], "bias", Scale())
    snapshot = _snapshot(model)
    classes = [type(m) for m in model]
    chains = {
        "1": "{'weight': ['_SpectralNorm', 'Scale']}",
        "2": "{'weight': ['_SpectralNorm'], 'bias': ['Scale']}",
    }
    for target, layer in ((None, "1"), ("1", "1"), ("2", "2")):
        with pytest.raises(ValueError) as info:
            strip_spectral_norm_(model, target)
        # one line naming each parametrization class in its chain (not the modules' multi-line repr)
        assert str(info.value) == (
            f"strip_spectral_norm_: layer '{layer}' has parametrizations {chains[layer]}; "
            "expected spectral norm alone on 'weight'"
        )
    assert _equal_state(model, snapshot)
    assert [type(m) for m in model] == classes
    assert spectral_norm_style(model[0]) == "hook"  # the valid layer was not stripped either


def test_targets_and_layers_without_sn() -> None:
    model = nn.Sequential(hook_sn(nn.Linear(3, 3)), param_sn(nn.Linear(3, 3)), nn.Conv1d(3, 3, 1))
    record = strip_spectral_norm_(model, "1")
    assert record.names == ["1"]
    assert spectral_norm_style(model[0]) == "hook" and spectral_norm_style(model[1]) is None
    assert strip_spectral_norm_(model, "2").names == []  # no SN there: ignored
    record.restore()
    assert spectral_norm_style(model[1]) == "parametrization"


def test_convert_needs_the_whole_hook_triple() -> None:
    """``X.weight_orig``/``X.weight_v`` alone are someone else's names (e.g. weight norm's ``weight_v``)."""
    torch.manual_seed(0)
    lone = {
        "0.weight_orig": torch.randn(2, 3),
        "0.bias": torch.randn(2),
        "1.weight_v": torch.randn(2, 3),
        "1.weight_g": torch.randn(2, 1),
        "2.weight_orig": torch.randn(3, 3),
        "2.weight_u": torch.randn(3),  # two of three: still not spectral norm
        "3.weight_u": torch.randn(4),
        "3.weight_v": torch.randn(4),
    }
    converted = convert_spectral_norm_state_dict(lone)
    assert list(converted) == list(lone)
    assert all(converted[k] is v for k, v in lone.items())

    full = {**lone, "4.weight_orig": torch.randn(4, 4), "4.weight_u": torch.randn(4), "4.weight_v": torch.randn(4)}
    converted = convert_spectral_norm_state_dict(full)
    assert list(converted) == [*lone, "4.weight"]
    assert converted["4.weight"] is full["4.weight_orig"]
    # a real weight-norm checkpoint (``weight_g``/``weight_v``) loads back unchanged
    with pytest.warns(FutureWarning):
        wn = nn.Sequential(nn.utils.weight_norm(nn.Linear(3, 2)), hook_sn(nn.Linear(2, 2)))
    state = wn.state_dict()
    converted = convert_spectral_norm_state_dict(state)
    assert set(converted) == {"0.bias", "0.weight_g", "0.weight_v", "1.bias", "1.weight"}
    assert converted["0.weight_v"] is state["0.weight_v"] and converted["1.weight"] is state["1.weight_orig"]


def test_convert_leaves_other_parametrizations_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.utils.parametrizations.orthogonal(nn.Linear(3, 3)))
    state = model.state_dict()
    assert "0.parametrizations.weight.original" in state and "0.parametrizations.weight.0._u" not in state
    converted = convert_spectral_norm_state_dict(state)
    assert list(converted) == list(state)


@pytest.mark.parametrize("style", ["hook", "parametrization"])
def test_sn_checkpoint_fits_a_reparametrized_san_critic(style: str) -> None:
    """An SN checkpoint's weight becomes the raw W of a reparametrized SAN critic; s stays the critic's own."""
    sn = hook_sn if style == "hook" else param_sn
    torch.manual_seed(0)
    source = nn.Sequential(sn(nn.Conv2d(3, 4, 3, padding=1)), nn.ReLU(), sn(nn.Conv2d(4, 2, 3, padding=1)))
    source(torch.randn(1, 3, 8, 8))
    raw = [source[0].weight_orig if style == "hook" else source[0].parametrizations.weight.original]
    critic = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    apply_san(critic, targets="0", example_input=torch.randn(1, 3, 8, 8), form="reparametrize")
    own = critic.state_dict()
    plain = convert_spectral_norm_state_dict(source.state_dict())
    fitted = to_reparametrized_keys(plain, own)
    assert sorted(fitted) == sorted(own)  # layer 0 reparametrized, layer 2 plain
    swap = {"0.weight": ["0.parametrizations.weight.original", "0.parametrizations.weight.0.s"]}
    assert list(fitted) == [k for key in plain for k in swap.get(key, [key])]  # the state's order kept
    assert fitted["0.parametrizations.weight.original"] is plain["0.weight"]
    assert fitted["0.parametrizations.weight.0.s"] is own["0.parametrizations.weight.0.s"]
    critic.load_state_dict(fitted)
    assert torch.equal(critic[0].parametrizations.weight.original, raw[0].detach())
    theirs = {**plain, "0.parametrizations.weight.0.s": torch.tensor(3.0)}  # a state's own s wins over the critic's
    assert float(to_reparametrized_keys(theirs, own)["0.parametrizations.weight.0.s"]) == 3.0
    assert to_reparametrized_keys(plain, {k: v for k, v in plain.items()}) == plain  # nothing reparametrized: as is


def test_to_reparametrized_keys_leaves_other_parametrizations_alone() -> None:
    """A layer under torch's parametrized SN (not SAN's form) keeps its plain key; SAN's layer is still mapped."""
    torch.manual_seed(0)
    critic = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), param_sn(nn.Linear(4, 2))
    )
    apply_san(critic, targets="0", example_input=torch.randn(1, 3, 8, 8), form="reparametrize")
    own = critic.state_dict()
    plain = {"0.weight": torch.randn(4, 3, 3, 3), "0.bias": torch.zeros(4), "3.weight": torch.randn(2, 4)}
    fitted = to_reparametrized_keys(plain, own)
    assert fitted["0.parametrizations.weight.original"] is plain["0.weight"]
    assert fitted["3.weight"] is plain["3.weight"] and "3.parametrizations.weight.0.s" not in fitted
