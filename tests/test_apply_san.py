"""``apply_san`` (strip SN + circular padding + ``SAN``) and ``san.remove()`` as its exact inverse; resume.

The inverse gives back the same Parameter objects, values, classes, padding modes, hooks and module
attributes (optimizer state stays valid). A checkpoint of model, optimizer and ``san.state_dict()``
resumes bit for bit, and the SAN part of it is needed for that.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from _san_models import SNCritic, assert_same, batch, before_param, fingerprint
from torch import nn

from san_core import SAN, apply_san, conv_constant

ALREADY = r"^apply_san: layer 'conv1' is already normalized by SAN\(5 layers of SNCritic, interval=1\); call its "


def test_apply_san_then_remove_is_an_exact_inverse() -> None:
    model = SNCritic()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(*batch()).square().mean().backward()
    opt.step()  # the optimizer has state
    opt_state = copy.deepcopy(opt.state_dict())
    before = fingerprint(model)
    x, y = batch(8, 6)
    model.eval()
    out = model(x, y)

    san = apply_san(model, example_input=batch())
    assert set(san.layers) == {"conv1", "conv2", "conv3", "head", "embed"}
    assert {n: m.padding_mode for n, m in model.named_children() if n.startswith("conv")} == dict.fromkeys(
        ("conv1", "conv2", "conv3"), "circular"
    )
    assert model.conv1.weight is before_param(before, model, "conv1.weight_orig")
    applied = fingerprint(model)
    # a second application is refused up front, before the padding step could object
    for kwargs in ({}, {"circular_padding": False}, {"strip_spectral_norm": False}):
        with pytest.raises(RuntimeError, match=ALREADY + r"\.remove\(\) first$"):
            apply_san(model, "conv1", **kwargs)
    with pytest.raises(RuntimeError, match=r"^SAN: layer 'embed' is already normalized by SAN\(5 layers"):
        SAN(model, "embed")
    assert_same(model, applied)
    model(x, y)
    assert san.remove() == ["conv1", "conv2", "conv3", "head", "embed"]
    assert_same(model, before)
    assert torch.equal(model(x, y), out)
    torch.testing.assert_close(opt.state_dict(), opt_state, rtol=0, atol=0)

    again = apply_san(model, example_input=batch())  # works after remove, and normalizes
    again.normalize_()
    assert float(conv_constant(model.conv2.weight, (4, 4), stride=2)) == pytest.approx(1.0, abs=1e-5)
    again.remove()
    assert fingerprint(model)["ids"] == before["ids"] and fingerprint(model)["classes"] == before["classes"]


def test_apply_san_on_a_wrapped_bare_layer() -> None:
    torch.manual_seed(0)
    layer = nn.utils.spectral_norm(nn.Conv2d(3, 4, 3, padding=1))
    with pytest.raises(ValueError, match=r"^SAN: got a bare Conv2d; .*wrap it \(e\.g\. nn\.Sequential\(layer\)\)$"):
        apply_san(layer)
    model = nn.Sequential(layer)
    before = fingerprint(model)
    san = apply_san(model, input_sizes={"0": (6, 6)})
    assert list(san.layers) == ["0"] and layer.padding_mode == "circular"
    san.normalize_()
    assert float(conv_constant(layer.weight, (6, 6))) == pytest.approx(1.0, abs=1e-5)
    san.remove()
    assert fingerprint(model)["ids"] == before["ids"] and layer.padding_mode == "zeros"


# ------------------------------------------------------------------------------------- bit-for-bit resume
def run(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    for step in steps:
        opt.zero_grad()
        model(*batch(seed=100 + step)).square().mean().backward()
        opt.step()


def fresh(interval: int, seed: int) -> tuple[SNCritic, torch.optim.Optimizer, SAN]:
    model = SNCritic()  # seeds itself
    if seed:  # a differently initialized model: only the checkpoint can make it match
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    san = apply_san(model, filter_ratio=0.5, linear_method="power", interval=interval, seed=seed)
    san.attach(opt)
    return model, opt, san


@pytest.mark.parametrize("interval", [1, 3])
def test_resume_is_bit_for_bit(interval: int) -> None:
    n = 4
    model_a, opt_a, _ = fresh(interval, seed=0)
    run(model_a, opt_a, range(2 * n))

    model_b, opt_b, san_b = fresh(interval, seed=0)
    run(model_b, opt_b, range(n))
    buffer = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "opt": opt_b.state_dict(), "san": san_b.state_dict()}, buffer)
    assert san_b.power_vectors and san_b.calls == n

    def resumed(load_san: bool) -> SNCritic:
        buffer.seek(0)
        checkpoint = torch.load(buffer)
        model_c, opt_c, san_c = fresh(interval, seed=7)
        model_c.load_state_dict(checkpoint["model"])
        opt_c.load_state_dict(checkpoint["opt"])
        if load_san:
            san_c.load_state_dict(checkpoint["san"])
        run(model_c, opt_c, range(n, 2 * n))
        return model_c

    final_a = model_a.state_dict()
    final_c = resumed(load_san=True).state_dict()
    assert list(final_c) == list(final_a)
    for key, value in final_a.items():
        assert torch.equal(final_c[key], value), key
    # the SAN state matters: without it (step counter, subset RNG, power vectors) the run differs
    without = resumed(load_san=False).state_dict()
    assert not all(torch.equal(without[k], v) for k, v in final_a.items())
