"""san_biggan on the stand-in (CI): SAN layers, construction-time swap, patch_discriminator/unpatch.

The stand-in (tests/standins/biggan_standin.py) is built the way BigGAN-PyTorch builds its models. The
launcher and checkpoints are in test_biggan_launcher.py, an actual checkout in test_biggan_real.py; both
use :func:`recomputed` / :func:`assert_normalized` and the fixtures from here.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from san_biggan import (
    SANBigGANError,
    SANConv2d,
    SANEmbedding,
    SANLayer,
    SANLinear,
    SANOptions,
    install_discriminator_patch,
    is_ajbrock_sn,
    patch_discriminator,
    san_layer_from,
)
from standins import biggan_standin as standin
from torch import nn

from san_core import conv_constant, linear_constant


def recomputed(D: nn.Module) -> dict[str, float]:
    """Every SAN layer's constant now, computed by san_core from the weight (float32 inside)."""
    out = {}
    for name, layer in D.san.layers.items():
        if isinstance(layer, nn.Conv2d):
            size = D.san.san.input_sizes[name]
            out[name] = float(conv_constant(layer.weight, size, stride=layer.stride, dilation=layer.dilation))
        else:
            out[name] = float(linear_constant(layer.weight))
    return out


def assert_normalized(D: nn.Module, tol: float) -> None:
    worst = {n: c for n, c in recomputed(D).items() if abs(c - 1) > tol}
    assert not worst, f"constants off 1 by more than {tol}: {worst}"


@pytest.fixture
def restore_standin():
    init = standin.Discriminator.__dict__["__init__"]
    yield
    standin.Discriminator.__init__ = init


@pytest.fixture
def installed(restore_standin):
    return install_discriminator_patch(standin, SANOptions(), verbose=False)


# ---------------------------------------------------------------------------------------- layers
def test_san_layers_take_sn_arguments_pad_circularly_and_load_sn_state():
    conv = functools.partial(SANConv2d, kernel_size=3, padding=1, num_svs=1, num_itrs=2, eps=1e-8)(4, 6)
    x = torch.randn(2, 4, 7, 7)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)
    assert conv.sv0.shape == (1,) and "sv0" in conv.state_dict() and (conv.num_svs, conv.num_itrs) == (1, 2)
    sn = standin.SNEmbedding(5, 3, num_svs=2)
    san = SANEmbedding(5, 3, num_svs=2)
    san.load_state_dict(sn.state_dict())  # u0, u1, sv1 of an SN checkpoint are not SAN state
    torch.testing.assert_close(san.weight, sn.weight)
    assert isinstance(SANLinear(3, 2), nn.Linear) and isinstance(san, nn.Embedding)
    mmagic_style = standin.SNConv2d(2, 3, 3, padding=1)  # mmagic's copy names the attribute num_iters
    mmagic_style.num_iters = mmagic_style.__dict__.pop("num_itrs") + 2
    converted = san_layer_from(mmagic_style)
    assert converted.num_itrs == 3 and converted.weight is mmagic_style.weight and converted.padding_mode == "circular"
    with pytest.raises(ValueError, match="num_svs to be an int >= 1, got 0"):
        SANLinear(3, 2, num_svs=0)


# --------------------------------------------------------------------------- construction-time swap
def test_construction_swap_builds_san_D_only(installed):
    D = standin.Discriminator(D_param="SAN")
    G = standin.Generator()
    kinds = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert kinds and all(isinstance(m, SANLayer) for m in kinds)
    assert all(is_ajbrock_sn(m) for m in G.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert standin.layers.SNConv2d is standin.SNConv2d and D.D_param == "SAN"
    optimized = {id(p) for group in D.optim.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in D.parameters()}
    assert_normalized(D, 1e-5)  # normalized once at construction
    assert all(
        isinstance(m, standin.SNConv2d)
        for m in standin.Discriminator(D_param="SN").modules()
        if isinstance(m, nn.Conv2d)
    )
    installed.remove()
    with pytest.raises(AttributeError, match="which_conv"):  # the original again: it knows only D_param='SN'
        standin.Discriminator(D_param="SAN")


def test_constants_are_one_after_every_D_step_and_sv0_logs_them(installed):
    torch.manual_seed(0)
    D, G = standin.Discriminator(D_param="SAN"), standin.Generator()
    for _ in range(3):
        before = [p.detach().clone() for p in D.parameters()]
        standin.d_step(G, D)
        assert_normalized(D, 1e-5)
        last = D.san.san.last_constants
        assert max(abs(float(c) - 1) for c in last.values()) > 1e-6  # the step moved W; SAN pulled it back
        svs = {n[: -len(".sv0")]: float(b) for n, b in D.state_dict().items() if "sv" in n}
        assert svs == pytest.approx({n: float(c) for n, c in last.items()}, abs=1e-6)
        assert any(not torch.equal(a, b) for a, b in zip(before, D.parameters()))


def test_interval_normalizes_every_nth_step(restore_standin):
    install_discriminator_patch(standin, SANOptions(interval=2), verbose=False)
    torch.manual_seed(1)
    D, G = standin.Discriminator(D_param="SAN"), standin.Generator()
    standin.d_step(G, D)
    assert max(abs(c - 1) for c in recomputed(D).values()) > 1e-6
    standin.d_step(G, D)
    assert_normalized(D, 1e-5)


def test_fp16_D_with_master_copy_adam(installed):
    torch.manual_seed(2)
    D = standin.Discriminator(D_param="SAN", D_mixed_precision=True, D_fp16=True).half()
    G = standin.Generator()
    for _ in range(3):
        standin.d_step(G, D)
        assert_normalized(D, 3e-3)  # fp16 weights; the constant itself is computed in float32
        conv = D.blocks[1].conv2
        assert conv.weight.dtype == torch.float16 and conv_constant(conv.weight, (8, 8)).dtype == torch.float32
        for name, layer in D.san.layers.items():
            master = D.optim.state[layer.weight]["fp32_p"]
            assert torch.equal(layer.weight, master.half()) and master.dtype == torch.float32  # re-cast from it
            if isinstance(layer, nn.Conv2d):  # the constant comes from the fp32 master, not its fp16 rounding
                size = D.san.san.input_sizes[name]
                constant = conv_constant(master, size, stride=layer.stride, dilation=layer.dilation)
            else:
                constant = linear_constant(master)
            assert float(constant) == pytest.approx(1, abs=2e-6), name


def test_loading_a_checkpoint_renormalizes_and_accepts_sn_state(installed):
    D = standin.Discriminator(D_param="SAN")
    sn_state = standin.Discriminator().state_dict()  # an SN checkpoint: raw weights, u0 buffers
    D.load_state_dict(sn_state)
    assert_normalized(D, 1e-5)
    state = {k: v * 3 if k.endswith("weight") else v for k, v in D.state_dict().items()}
    D.load_state_dict(state)
    assert_normalized(D, 1e-5)


# -------------------------------------------------------------------------------- patch/unpatch
def test_patch_keeps_parameters_and_unpatch_restores_modules():
    torch.manual_seed(3)
    D, G = standin.Discriminator(), standin.Generator()
    standin.d_step(G, D)  # Adam state exists
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 3])
    modules, params = dict(D.named_modules()), [id(p) for p in D.parameters()]
    hooks = len(D.optim._optimizer_step_post_hooks)
    out = D.eval()(x, y)
    patch = patch_discriminator(D)
    assert [id(p) for p in D.parameters()] == params and all(p in D.optim.state for p in D.parameters())
    assert set(patch.names) == {n for n, m in modules.items() if is_ajbrock_sn(m)} and D.D_param == "SAN"
    assert_normalized(D, 1e-5)
    patch.unpatch()
    assert all(D.get_submodule(n) is m for n, m in modules.items() if n)
    torch.testing.assert_close(D(x, y), out)  # SN is blind to the scale SAN changed
    patch = patch_discriminator(D.train())
    standin.d_step(G, D)
    assert_normalized(D, 1e-5)
    patch.unpatch()
    assert len(D.optim._optimizer_step_post_hooks) == hooks and "san" not in D.__dict__ and D.D_param == "SN"
    standin.d_step(G, D)  # D.optim still drives the (restored) SN D


def test_patch_selects_kinds_and_targets():
    D = standin.Discriminator()
    patch = patch_discriminator(D, layers=("conv",), targets="blocks.0.*")
    assert patch.names == ["blocks.0.conv1", "blocks.0.conv2", "blocks.0.conv_sc"]
    assert is_ajbrock_sn(D.blocks[1].conv1) and is_ajbrock_sn(D.linear) and is_ajbrock_sn(D.embed)


def test_bad_input_leaves_model_untouched(restore_standin):
    plain = nn.Sequential(nn.Conv2d(3, 3, 3), nn.Linear(3, 1))
    with pytest.raises(SANBigGANError, match="nothing to patch"):
        patch_discriminator(plain)
    D = standin.Discriminator()
    modules = dict(D.named_modules())
    for kwargs, message in [
        ({"interval": 0}, "interval"),
        ({"layers": ("bogus",)}, "subset"),
        ({"targets": "nope"}, "no layer"),
    ]:
        with pytest.raises(SANBigGANError, match=message):
            patch_discriminator(D, **kwargs)
        assert dict(D.named_modules()) == modules and "san" not in D.__dict__
    patch_discriminator(D)
    with pytest.raises(SANBigGANError, match="already has SAN"):
        patch_discriminator(D)
    with pytest.raises(SANBigGANError, match="expected a Discriminator"):
        install_discriminator_patch(torch.nn)
    install_discriminator_patch(standin, verbose=False)
    with pytest.raises(SANBigGANError, match="already patched"):
        install_discriminator_patch(standin)
