"""``form="reparametrize"`` (the authors' ``W / s``): effective constant 1 after each counted step, no gradient
through ``s``, exact inverse (raw weight, or ``W / s`` folded in), resume, bad input as the rescale form."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from _san_models import SNCritic, assert_same, batch, critic, fingerprint
from torch import Tensor, nn

from san_core import SAN, apply_san


def fft_constant(weight: Tensor, grid: tuple[int, int]) -> float:
    """Independent float64 reference: ``max |fft2(w_ij zero-padded to the grid)|`` (kernels no larger than the grid)."""
    return float(torch.fft.fft2(weight.detach().double(), s=grid).abs().amax())


def effective_constants(model: nn.Module) -> dict[str, float]:
    return {
        "conv1": fft_constant(model.conv1.weight, (8, 8)),
        "conv2": fft_constant(model.conv2.weight, (8, 8)),  # stride 2, paper mode: the full input grid
        "head": float(torch.linalg.svdvals(model.head.weight.detach().double())[0]),
        "embed": float(torch.linalg.svdvals(model.embed.weight.detach().double())[0]),
    }


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    for step in steps:
        opt.zero_grad()
        model(*batch(seed=step)).square().mean().backward()
        opt.step()


def test_after_each_step_the_effective_weight_has_constant_one_and_the_raw_weight_is_trained() -> None:
    model = critic()
    raw = {n: model.get_parameter(f"{n}.weight") for n in ("conv1", "conv2", "head", "embed")}
    san = SAN(model, example_input=batch(), form="reparametrize")
    assert all(model.get_submodule(n).parametrizations.weight.original is p for n, p in raw.items())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    san.attach(opt)
    for step in range(3):
        before = {n: p.detach().clone() for n, p in raw.items()}
        train(model, opt, range(step, step + 1))
        assert all(not torch.equal(before[n], p) for n, p in raw.items())  # Adam moved the raw weights
        for name, value in effective_constants(model).items():
            assert value == pytest.approx(1.0, abs=1e-5), (step, name)
        for name, s in san.scales.items():  # s is the raw weight's constant, reported as such
            assert torch.equal(s.s, san.last_constants[name].to(s.s.dtype))
            assert float(s.s) != pytest.approx(1.0, abs=1e-3)
    assert [d["constant"] for d in san.describe()] == [float(san.last_constants[n]) for n in san.layers]


def test_gradients_do_not_flow_into_s() -> None:
    model = critic()
    san = SAN(model, example_input=batch(), form="reparametrize")
    san.normalize_()
    x, y = batch(seed=5)
    model(x, y).sum().backward()
    s = {n: m.s for n, m in san.scales.items()}
    assert all(not v.requires_grad and v.grad is None for v in s.values())
    # the raw weight's gradient is that of f(W / s) with s a constant: the chain rule through 1/s only
    twin = critic()
    with torch.no_grad():
        for name in s:
            twin.get_parameter(f"{name}.weight").copy_(model.get_submodule(name).parametrizations.weight.original)
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if "parametrizations" not in k}, strict=False)
    fixed = {n: twin.get_parameter(f"{n}.weight").detach() / v for n, v in s.items()}
    params = {f"{n}.weight": w.requires_grad_() for n, w in fixed.items()}
    torch.func.functional_call(twin, params, (x, y)).sum().backward()
    for name, value in s.items():
        expected = params[f"{name}.weight"].grad / value
        got = model.get_submodule(name).parametrizations.weight.original.grad
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_forward_equals_the_rescale_form_after_one_normalization() -> None:
    x, y = batch(seed=3)
    outs = []
    for form in ("rescale", "reparametrize"):
        model = critic().eval()
        SAN(model, example_input=batch(), form=form).normalize_()
        outs.append(model(x, y))
    assert torch.equal(outs[0], outs[1])  # W / c computed the same way either side


@pytest.mark.parametrize("fold_scale", [False, True])
def test_remove_restores_class_and_parameter_identity(fold_scale: bool) -> None:
    model = critic()
    before = fingerprint(model)
    raw = {n: model.get_parameter(f"{n}.weight") for n in ("conv1", "conv2", "head", "embed")}
    san = SAN(model, example_input=batch(), form="reparametrize")
    san.normalize_()
    effective = {n: model.get_submodule(n).weight.detach().clone() for n in raw}
    originals = {n: p.detach().clone() for n, p in raw.items()}
    assert san.remove(fold_scale=fold_scale) == list(raw)
    for name, param in raw.items():
        layer = model.get_submodule(name)
        assert layer.weight is param and type(layer) is before["classes"][name]
        assert torch.equal(param, effective[name] if fold_scale else originals[name])
    if not fold_scale:
        assert_same(model, before)  # nothing was ever written into the raw weights


def test_apply_san_reparametrize_strips_sn_and_remove_is_an_exact_inverse() -> None:
    model = SNCritic()
    before = fingerprint(model)
    san = apply_san(model, example_input=batch(), form="reparametrize")
    san.normalize_()
    assert float(torch.linalg.svdvals(model.head.weight.detach())[0]) == pytest.approx(1.0, abs=1e-5)
    san.remove()
    assert_same(model, before)


def test_resume_equals_uninterrupted() -> None:
    def setup() -> tuple[nn.Module, SAN, torch.optim.Optimizer]:
        model = critic()
        san = SAN(model, example_input=batch(), form="reparametrize", filter_ratio=0.5, linear_method="power")
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        san.attach(opt)
        return model, san, opt

    model, san, opt = setup()
    train(model, opt, range(3))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "san": san.state_dict()}, buffer)
    train(model, opt, range(3, 6))

    resumed, rsan, ropt = setup()
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=False)
    resumed.load_state_dict(ckpt["model"])
    ropt.load_state_dict(ckpt["opt"])
    rsan.load_state_dict(ckpt["san"])
    train(resumed, ropt, range(3, 6))
    for key, value in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_state_of_the_other_form_is_refused() -> None:
    model = critic()
    san = SAN(model, example_input=batch(), form="reparametrize")
    other = SAN(critic(), example_input=batch())
    with pytest.raises(ValueError, match=r"^SAN.load_state_dict: the state is of form 'rescale', this SAN of 'rep"):
        san.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match=r"^SAN: expected form in \('rescale', 'reparametrize'\), got 'inplace'$"):
        SAN(critic(), form="inplace")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_raw_weight_is_refused_and_nothing_changes(value: float) -> None:
    model = critic()
    san = SAN(model, example_input=batch(), form="reparametrize")
    san.normalize_()
    with torch.no_grad():
        model.conv2.parametrizations.weight.original.view(-1)[0] = value
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"^SAN: layers \['conv2'\] have NaN/Inf weights; nothing was changed$"):
        san.normalize_()
    for key, tensor in before.items():
        torch.testing.assert_close(model.state_dict()[key], tensor, rtol=0, atol=0, equal_nan=True, msg=key)
