"""BigGANSAN with BigGAN's ``Adam16`` on the sync-free path (CPU, ``sync_free=True``, fp16 D weights).

``Adam16`` creates the fp32 master ``state["fp32_p"]`` at a weight's first step, updates it in place
(``addcdiv_``) and then gives the fp16 Parameter a fresh tensor, ``p.data = fp32_p.half()``, at every step.
During ``BigGANSAN.normalize_`` the Parameter's ``.data`` is that master, so san_core's plan key (same
Parameter, same master storage, float32) is stable: only the first Adam16 step re-plans (the data was the
fp16 weight before); every later call runs from the same plans with zero host syncs and stays exact. A master
replaced by a new tensor (new storage) is re-planned, so no plan reads a tensor the master no longer is.

The optimizer used in CI is the stand-in's ``MasterCopyAdam`` (tests/standins/biggan_standin.py: the same storage
behaviour); with ``SAN_BIGGAN_ROOT`` naming an ajbrock/BigGAN-PyTorch checkout, the same checks also run BigGAN's own
``utils.Adam16`` (only its class is taken from ``utils.py``: importing the module needs torchvision and its datasets).
"""

from __future__ import annotations

import ast
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from san_biggan import BigGANSAN, SANConv2d, SANEmbedding, SANLinear, SANOptions
from standins.biggan_standin import MasterCopyAdam
from test_sync_free import count_syncs
from torch import Tensor, nn

from san_core import conv_constant, linear_constant

SIZES = {"c1": (8, 8), "c2": (8, 8), "down": (8, 8)}
STEPS = 5


def real_adam16() -> type:
    """``Adam16`` of the checkout at ``SAN_BIGGAN_ROOT`` (its class only, run with ``math``/``torch``/``Optimizer``)."""
    root = os.environ.get("SAN_BIGGAN_ROOT")
    if not root:
        pytest.skip("SAN_BIGGAN_ROOT is not set (path of an ajbrock/BigGAN-PyTorch checkout)")
    source = Path(root, "utils.py").read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Adam16")
    namespace: dict[str, Any] = {"math": math, "torch": torch, "Optimizer": torch.optim.Optimizer}
    exec(compile(ast.Module([node], []), str(Path(root, "utils.py")), "exec"), namespace)
    return namespace["Adam16"]


OPTIMIZERS: dict[str, Callable[[], type]] = {"MasterCopyAdam": lambda: MasterCopyAdam, "BigGAN-Adam16": real_adam16}


def fp16_critic() -> nn.Module:
    torch.manual_seed(0)
    D = nn.Module()
    D.c1 = SANConv2d(3, 8, 3, padding=1)
    D.c2 = SANConv2d(8, 8, 3, padding=1)
    D.down = SANConv2d(8, 8, 4, stride=2, padding=1)
    D.linear = SANLinear(8, 1)
    D.embed = SANEmbedding(5, 8)
    return D.half()


def master_constant(layer: nn.Module, master: Tensor, size: Any) -> float:
    """The master's own constant, in float64 (independent of the plans)."""
    if isinstance(layer, nn.Conv2d):
        return float(conv_constant(master.double(), size, stride=layer.stride, dilation=layer.dilation))
    return float(linear_constant(master.double()))


def setup(optimizer_cls: type) -> tuple[nn.Module, BigGANSAN, torch.optim.Optimizer, list[list[str]]]:
    D = fp16_critic()
    san = BigGANSAN(D, [*SIZES, "linear", "embed"], SANOptions(sync_free=True), input_sizes=SIZES)
    optimizer = optimizer_cls(D.parameters(), lr=1e-2, betas=(0.0, 0.999))
    san.attach(optimizer)
    engine = san.san._engine
    planned: list[list[str]] = []  # the layers each warm-up (re)planned
    prepare = engine.prepare
    engine.prepare = lambda names: (planned.append(list(names)), prepare(names))[1]  # type: ignore[method-assign]
    return D, san, optimizer, planned


def d_step(D: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    for p in D.parameters():  # the gradients' source does not matter to the plans; a forward pass is not needed
        p.grad = torch.randn_like(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # BigGAN's Adam16 uses add_'s deprecated (Number, Tensor) form
        optimizer.step()


def assert_exact(san: BigGANSAN, optimizer: torch.optim.Optimizer) -> None:
    for name, layer in san.layers.items():
        master = optimizer.state[layer.weight]["fp32_p"]
        assert master.dtype == torch.float32 and layer.weight.dtype == torch.float16, name
        assert torch.equal(layer.weight, master.half()), name  # the fp16 weight is the master's rounding
        assert master_constant(layer, master, SIZES.get(name)) == pytest.approx(1.0, abs=2e-6), name
        assert float(layer.sv0) == float(san.san.last_constants[name].to(layer.sv0.dtype)), name  # BigGAN's log


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_adam16_steady_state_never_re_plans_has_no_sync_and_is_exact(opt_name, monkeypatch) -> None:
    D, san, optimizer, planned = setup(OPTIMIZERS[opt_name]())
    assert san.san.sync_free_active() and planned == []  # construction planned before the spy (fp16 weights)
    engine = san.san._engine
    normalize, inner = san.normalize_, san.san.normalize_
    syncs: list[list[str]] = []
    stale_in_call: list[list[str]] = []  # during the call: the Parameters' .data are the masters

    def counted(**kwargs: Any) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        counter = count_syncs(lambda: out.update(normalize(**kwargs)), monkeypatch)
        assert counter.ops > 0
        syncs.append(counter.syncs)
        return out

    def recorded(**kwargs: Any) -> dict[str, Tensor]:
        stale_in_call.append(engine.stale())
        return inner(**kwargs)

    monkeypatch.setattr(san, "normalize_", counted)  # what the optimizer's post-hook calls
    monkeypatch.setattr(san.san, "normalize_", recorded)  # what BigGANSAN.normalize_ calls inside the swap
    d_step(D, optimizer)  # first step: the masters appear, so every layer's data (fp16 -> master) re-plans once
    assert planned == [list(san.layers)] and stale_in_call == [list(san.layers)] and len(syncs) == 1
    assert_exact(san, optimizer)
    entries = dict(engine.entries)
    for step in range(STEPS):
        pointers = {n: layer.weight.data_ptr() for n, layer in san.layers.items()}
        d_step(D, optimizer)
        assert any(layer.weight.data_ptr() != pointers[n] for n, layer in san.layers.items())  # p.data = ….half()
        assert planned == [list(san.layers)], f"step {step}: re-planned {planned[1:]}"
        assert stale_in_call[-1] == [] and all(engine.entries[n] is entry for n, entry in entries.items())
        assert syncs[-1] == [], f"step {step}: host syncs {syncs[-1]}"
        assert max(abs(float(c) - 1) for c in san.san.last_constants.values()) > 1e-4  # a real rescale, not a no-op
        assert_exact(san, optimizer)
    assert len(syncs) == STEPS + 1 and san.san.calls == STEPS + 1


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_a_replaced_master_is_re_planned_and_normalized_exactly(opt_name) -> None:
    D, san, optimizer, planned = setup(OPTIMIZERS[opt_name]())
    for _ in range(2):
        d_step(D, optimizer)
    assert planned == [list(san.layers)]
    for name in ("c2", "linear"):  # a new master tensor (new storage, other values), e.g. a reloaded optimizer state
        state = optimizer.state[san.layers[name].weight]
        state["fp32_p"] = state["fp32_p"] * 3
    d_step(D, optimizer)
    assert planned[1:] == [["c2", "linear"]]  # only those; c2's plan reading the old master would leave c2 at ~3
    assert_exact(san, optimizer)
    d_step(D, optimizer)
    assert len(planned) == 2
    assert_exact(san, optimizer)
