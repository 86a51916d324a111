"""Issue 14 items 3, 5, 6: SAN refused on a DDP-wrapped critic whose SN buffers it would strip; stride_mode='exact'
sizes checked at apply time and whenever a new size is recorded; targets types; attach() to a foreign optimizer;
torch.compile'd critics; float32 overflow of huge weights."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn

from san_core import SAN, apply_san, select_layers


def fft_constant(weight: Tensor, size: tuple[int, int]) -> float:
    """Brute force in float64: max |DFT| of every kernel zero-padded to the map (stride 1)."""
    return float(torch.fft.fft2(weight.detach().double(), s=size).abs().max())


def critic(sn: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    return nn.Sequential(
        nn.utils.spectral_norm(conv) if sn else conv,
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 4, 4, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 1),
    )


def snapshot(model: nn.Module) -> dict[str, object]:
    """Values, parameter/buffer identities, hooks and padding modes: what a refused call must leave alone."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "params": [id(p) for p in model.parameters()],
        "buffers": [id(b) for b in model.buffers()],
        "hooks": {n: (len(m._forward_pre_hooks), len(m._forward_hooks)) for n, m in model.named_modules()},
        "padding": {n: getattr(m, "padding_mode", None) for n, m in model.named_modules()},
    }


def unchanged(model: nn.Module, before: dict[str, object]) -> bool:
    after = snapshot(model)
    state_a, state_b = after.pop("state"), before["state"]
    rest = {k: v for k, v in before.items() if k != "state"}
    assert isinstance(state_a, dict) and isinstance(state_b, dict)
    return (
        after == rest and state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    )


# ------------------------------------------------------------------------------------------------------- DDP (3)
@pytest.fixture
def gloo(tmp_path: Path) -> Iterator[None]:
    if not dist.is_available() or not dist.is_gloo_available() or sys.platform == "win32":
        pytest.skip("torch.distributed/gloo (file:// rendezvous) not available")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1, timeout=datetime.timedelta(seconds=60)
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_apply_san_on_a_ddp_wrapped_sn_critic_is_refused_up_front(gloo: None) -> None:
    ddp = nn.parallel.DistributedDataParallel(critic(sn=True))
    before = snapshot(ddp.module)
    with pytest.raises(RuntimeError, match=r"already wrapped in DistributedDataParallel.*Apply SAN before wrapping"):
        apply_san(ddp, example_input=torch.randn(2, 3, 8, 8))
    assert unchanged(ddp.module, before)
    ddp(torch.randn(2, 3, 8, 8)).sum().backward()  # DDP still works (the old code crashed here in its reducer)


@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
def test_apply_san_before_wrapping_trains_under_ddp(gloo: None, form: str) -> None:
    model = critic(sn=True)
    x = torch.randn(2, 3, 8, 8)
    san = apply_san(model, example_input=x, form=form, sync_free=False)
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    san.normalize_(force=True)
    san.attach(opt)
    for _ in range(2):
        opt.zero_grad()
        ddp(x).square().mean().backward()
        opt.step()
    assert san.calls == 2
    weight = model[0].weight.detach()
    assert fft_constant(weight, (8, 8)) == pytest.approx(1.0, abs=2e-5)


# ------------------------------------------------------------------------------------------- stride_mode exact (5)
def test_exact_stride_mode_refuses_a_size_not_divisible_at_apply_time() -> None:
    model = critic()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"layer '2' sees a \(7, 7\) input, not divisible by its stride \(2, 2\)"):
        apply_san(model, stride_mode="exact", example_input=torch.randn(1, 3, 7, 7))
    assert unchanged(model, before)
    with pytest.raises(ValueError, match=r"layer '2' sees a \(9, 9\) input, not divisible by its stride"):
        SAN(model, stride_mode="exact", input_sizes={"2": (9, 9)})
    assert unchanged(model, before)


@pytest.mark.parametrize("sync_free", [False, True])
def test_exact_stride_mode_refuses_a_new_size_before_the_step(sync_free: bool) -> None:
    model = critic()
    san = apply_san(model, stride_mode="exact", example_input=torch.randn(1, 3, 8, 8), sync_free=sync_free)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    san.attach(opt)
    opt.zero_grad()
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"layer '2' sees a \(7, 7\) input, not divisible by its stride"):
        model(torch.randn(1, 3, 7, 7)).sum().backward()  # raised in the forward pre-hook: no step can follow
    assert unchanged(model, before)
    assert san.sizes_of("2") == [(8, 8)] and san.calls == 1  # (conv '0' did run at 7x7 and recorded it)
    constants = san.normalize_(force=True)  # still normalizable: strided constant on the 8x8 grid
    assert float(constants["0"]) == pytest.approx(fft_constant(before["state"]["0.weight"], (8, 8)), rel=1e-5)


# --------------------------------------------------------------------------------------------------- smaller (6)
def test_targets_of_a_wrong_type_say_what_is_accepted() -> None:
    model = critic()
    before = snapshot(model)
    for bad in (123, 1.5, {"0": 1}):
        with pytest.raises(TypeError, match=r"targets: expected None, a glob string or a list/tuple of glob strings"):
            apply_san(model, targets=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"exclude: expected None, a glob string or a list/tuple.*got int 7"):
        select_layers(model, exclude=7)  # type: ignore[arg-type]
    assert unchanged(model, before)


def test_attach_refuses_an_optimizer_without_the_critics_parameters() -> None:
    model = critic()
    san = SAN(model, example_input=torch.randn(1, 3, 8, 8), sync_free=False)
    other = torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(
        ValueError, match=r"the optimizer holds 1 parameters, none of them the critic's \(Sequential, 6"
    ):
        san.attach(other)
    assert not san._attached and not other._optimizer_step_post_hooks
    with pytest.raises(TypeError, match=r"expected a torch\.optim\.Optimizer, got list"):
        san.attach([])  # type: ignore[arg-type]
    san.attach(torch.optim.SGD(model[4].parameters(), lr=0.1))  # some of the critic's: fine


def test_a_compiled_critics_layer_names_have_no_orig_mod_prefix() -> None:
    compiled = torch.compile(critic())
    san = SAN(compiled, example_input=torch.randn(1, 3, 8, 8), sync_free=False)
    assert list(san.layers) == ["0", "2", "4"]
    san.normalize_(force=True)
    state = san.state_dict()
    rebuilt = critic()
    fresh = SAN(rebuilt, sync_free=False)
    fresh.load_state_dict(state)
    assert fresh.input_sizes == {"0": (8, 8), "2": (8, 8)}
    # a state saved with the prefixed names (older versions) loads too
    old = {**state, "layers": [f"_orig_mod.{n}" for n in state["layers"]]}
    old["input_sizes"] = {f"_orig_mod.{n}": s for n, s in state["input_sizes"].items()}
    other = SAN(critic(), sync_free=False)
    other.load_state_dict(old)
    assert other.input_sizes == {"0": (8, 8), "2": (8, 8)}


@pytest.mark.parametrize("sync_free", [False, True])
def test_huge_weights_fall_back_to_float64(sync_free: bool) -> None:
    model = critic()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e20)
    san = SAN(model, example_input=torch.randn(1, 3, 8, 8), sync_free=sync_free)
    w0 = model[0].weight.detach().double().clone()
    expected = fft_constant(w0, (8, 8))
    sigma = float(torch.linalg.svdvals(model[4].weight.detach().double())[0])
    assert expected > 1e19
    constants = san.normalize_(force=True)
    san.check()
    assert float(constants["0"]) == pytest.approx(expected, rel=1e-5)
    assert float(constants["4"]) == pytest.approx(sigma, rel=1e-5)
    torch.testing.assert_close(model[0].weight.double(), w0 / expected, rtol=1e-5, atol=0)
    assert fft_constant(model[0].weight, (8, 8)) == pytest.approx(1.0, abs=2e-5)
