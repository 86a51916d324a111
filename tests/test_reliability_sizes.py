"""Issue 14 item 4: a conv is normalized for every input size it sees (the max of its constants), with a bounded,
forgettable record and one warning per layer; copies (deepcopy, pickling) of an applied critic never write into the
original, and apply_san + remove() on a copy leaves no hook and no circular padding."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import Tensor, nn

from san_core import SAN, apply_san
from san_core._sizes import MAX_SIZES, SizeHook


def fft_constant(weight: Tensor, size: tuple[int, int]) -> float:
    """Brute force in float64: max |DFT| of every kernel zero-padded to the map (stride 1)."""
    return float(torch.fft.fft2(weight.detach().double(), s=size).abs().max())


class TwoScales(nn.Module):
    """One conv used at 8x8 and at 7x7 in the same forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv(x).mean(dim=(2, 3))
        b = self.conv(x[..., :7, :7]).mean(dim=(2, 3))
        return self.head(a + b)


def critic() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1)
    )


@pytest.mark.parametrize("sync_free", [False, True])
def test_a_conv_used_at_two_sizes_is_normalized_for_both(sync_free: bool) -> None:
    model = TwoScales()
    w0 = model.conv.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"layer 'conv' now sees a \(7, 7\) input, before \(8, 8\)"):
        san = apply_san(model, example_input=torch.randn(2, 3, 8, 8), sync_free=sync_free)
    assert san.sizes_of("conv") == [(7, 7), (8, 8)]
    c8, c7 = fft_constant(w0, (8, 8)), fft_constant(w0, (7, 7))
    assert abs(c8 - c7) > 1e-3 * c8  # the two grids give different constants
    constants = san.normalize_(force=True)
    assert float(constants["conv"]) == pytest.approx(max(c8, c7), rel=1e-5)
    w = model.conv.weight
    assert max(fft_constant(w, (8, 8)), fft_constant(w, (7, 7))) == pytest.approx(1.0, abs=2e-5)
    if sync_free:
        entry = san._engine.entries["conv"]
        assert entry.plan is not None and len(entry.more_plans) == 1  # one plan per (layer, size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per layer: alternating sizes stay silent
        model(torch.randn(1, 3, 8, 8))
        san.normalize_(force=True)
    san.remove()


@pytest.mark.parametrize("sync_free", [False, True])
def test_train_at_8_then_eval_at_5_keeps_both_until_forgotten(sync_free: bool) -> None:
    model = critic()
    san = SAN(model, example_input=torch.randn(1, 3, 8, 8), sync_free=sync_free)
    san.normalize_(force=True)
    with pytest.warns(UserWarning, match="now sees"):
        model(torch.randn(1, 3, 5, 5))
    assert san.sizes_of("0") == [(5, 5), (8, 8)] and san.input_sizes["0"] == (5, 5)
    w = model[0].weight.detach().clone()
    expected = max(fft_constant(w, (8, 8)), fft_constant(w, (5, 5)))
    assert float(san.normalize_(force=True)["0"]) == pytest.approx(expected, rel=1e-5)
    assert fft_constant(model[0].weight, (8, 8)) <= 1 + 2e-5  # still 1-Lipschitz at the training size
    assert san.forget_sizes() == {"0": [(8, 8)], "2": [(8, 8)]}
    assert san.sizes_of("0") == [(5, 5)]
    w = model[0].weight.detach().clone()
    assert float(san.normalize_(force=True)["0"]) == pytest.approx(fft_constant(w, (5, 5)), rel=1e-5)
    with pytest.raises(ValueError, match=r"\['nope'\] are not selected layers"):
        san.forget_sizes(["0", "nope"])
    fresh = SAN(critic(), sync_free=sync_free)
    fresh.load_state_dict(san.state_dict())  # the state after forgetting loads
    assert fresh.sizes_of("0") == [(5, 5)]


def test_at_most_max_sizes_are_kept_least_recent_first() -> None:
    model = critic()
    san = SAN(model, sync_free=False)
    sizes = [(n, n) for n in range(4, 4 + MAX_SIZES + 2)]
    with pytest.warns(UserWarning):
        for size in sizes:
            model(torch.randn(1, 3, *size))
    model(torch.randn(1, 3, 6, 6))  # seen again: most recent
    assert san.seen_sizes["0"] == [s for s in sizes[2:] if s != (6, 6)] + [(6, 6)]
    assert len(san.seen_sizes["0"]) == MAX_SIZES


@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
def test_a_deepcopy_is_independent_of_the_original(form: str) -> None:
    model = critic()
    san = apply_san(model, example_input=torch.randn(1, 3, 8, 8), form=form, sync_free=False)
    san.normalize_(force=True)
    twin = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the copy's inert hooks record nothing, so nothing warns
        out = twin(torch.randn(1, 3, 5, 5))
    assert out.shape == (1, 4, 1, 1)
    assert san.sizes_of("0") == [(8, 8)] and san.input_sizes["0"] == (8, 8)  # the original's sizes untouched
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)  # same function
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert twin[0].padding_mode == "circular"
    san.remove()
    assert model[0].padding_mode == "zeros" and not model[0]._forward_pre_hooks


def test_apply_san_and_remove_on_a_copy_leaves_no_hook_and_no_circular_padding() -> None:
    model = critic()
    san = apply_san(model, example_input=torch.randn(1, 3, 8, 8), sync_free=False)
    twin = copy.deepcopy(model)
    assert all(isinstance(h, SizeHook) and h.owner() is None for h in twin[0]._forward_pre_hooks.values())
    san_twin = apply_san(twin, example_input=torch.randn(1, 3, 8, 8), sync_free=False)
    assert len(twin[0]._forward_pre_hooks) == 1  # the copied inert hook is gone
    san_twin.remove()
    for i in (0, 2):
        assert twin[i].padding_mode == "zeros" and not twin[i]._forward_pre_hooks
        assert model[i].padding_mode == "circular" and len(model[i]._forward_pre_hooks) == 1
    san.remove()
    assert model[0].padding_mode == "zeros"


def test_torch_save_of_an_applied_critic_round_trips() -> None:
    model = critic()
    san = apply_san(model, example_input=torch.randn(1, 3, 8, 8), sync_free=False)
    san.normalize_(force=True)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    loaded(torch.randn(1, 3, 6, 6))  # its hooks are inert: the original SAN records nothing
    assert san.sizes_of("0") == [(8, 8)]
    san_loaded = apply_san(loaded, sync_free=False)
    san_loaded.remove()
    assert loaded[0].padding_mode == "zeros" and not loaded[0]._forward_pre_hooks


def test_torch_save_of_a_reparametrized_critic_says_how_to_save() -> None:
    model = critic()
    apply_san(model, example_input=torch.randn(1, 3, 8, 8), form="reparametrize", sync_free=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="state_dict"):
        torch.save(model, io.BytesIO())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_apply_san_on_a_copy_of_a_reparametrized_critic_says_what_to_remove() -> None:
    model = critic()
    apply_san(model, example_input=torch.randn(1, 3, 8, 8), form="reparametrize", sync_free=False)
    twin = copy.deepcopy(model)
    before = {k: v.clone() for k, v in twin.state_dict().items()}
    with pytest.raises(
        ValueError, match=r"layer '0' carries the W / s of SAN's form='reparametrize'.*remove_parametriz"
    ):
        apply_san(twin, sync_free=False)
    after = twin.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert twin[0].padding_mode == "circular" and len(twin[0]._forward_pre_hooks) == 1  # as copied, untouched
