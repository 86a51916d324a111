"""SANHook's form / sync_free / compile_step / cuda_graph keys: validated at build, passed to SAN, and the sync-free
path's delayed NaN/Inf error raised by ``SAN.check()`` at the hook's logging interval (real MMEngine Runner)."""

# ruff: noqa: E402  (the extra's imports follow the module-level skip)
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
REASON = f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
if MISSING:  # module-level names below use the extra's classes, so skip before they are defined
    pytest.skip(REASON, allow_module_level=True)

import san_mmagic
from mmagic.registry import HOOKS as MMAGIC_HOOKS
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from standins import mmagic_fixtures as fx
from standins.fft_reference import one_sparse_gain

fx.register_probe()
DATA_OK = fx.CIFAR_NPZ.is_file()

needs_data = pytest.mark.skipif(not DATA_OK, reason="needs ../shared/data (cifar10 subset npz)")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(form="authors"), r"^SANHook: expected form in \('rescale', 'reparametrize'\), got 'authors'$"),
        (dict(sync_free="yes"), r"^SANHook: expected sync_free to be None or a bool, got 'yes'$"),
        (dict(compile_step=1), r"^SANHook: expected compile_step to be a bool, got 1$"),
        (dict(compile_step=True, sync_free=False), r"^SANHook: compile_step/cuda_graph compile the sync-free step"),
        (dict(cuda_graph="on"), r"^SANHook: expected cuda_graph to be a bool, got 'on'$"),
    ],
)
def test_bad_values_fail_in_init_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        MMAGIC_HOOKS.build(dict(type="SANHook", **kwargs))
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only refusal")
def test_cuda_graph_without_cuda_fails_in_init() -> None:
    with pytest.raises(ValueError, match=r"^SANHook: cuda_graph=True needs CUDA, but torch.cuda.is_available"):
        san_mmagic.SANHook(cuda_graph=True)


def _cfg(tmp_path: Path, iters: int, **hook_keys: Any) -> Any:
    data = fx.cifar_png_folder(tmp_path / "cifar")
    cfg = fx.tiny_cfg(fx.SNGAN_CNN, tmp_path / "run", data, iters=iters, name="options", batch=2)
    cfg.custom_hooks = [h if h["type"] != "SANHook" else {**h, **hook_keys} for h in cfg.custom_hooks]
    return cfg


@needs_data
@pytest.mark.parametrize("compile_step", [False, True], ids=["eager", "compiled"])
def test_reparametrize_and_sync_free_reach_san_and_train_exactly(tmp_path: Path, compile_step: bool) -> None:
    runner = Runner.from_cfg(_cfg(tmp_path, 3, form="reparametrize", sync_free=True, compile_step=compile_step))
    runner.train()
    hook, probe = fx.hooks_of(runner)
    san = hook.san
    assert san.config["form"] == "reparametrize" and san.config["sync_free"] is True
    assert san.config["compile_step"] is compile_step and san.config["cuda_graph"] is False
    assert san.sync_free_active() and san.calls == probe.d_steps == 3
    for name, layer in san.layers.items():  # the forward's weight is W / s; the raw W is not normalized
        assert torch.nn.utils.parametrize.is_parametrized(layer, "weight"), name
        size = san.input_sizes.get(name)
        assert one_sparse_gain(layer, size) == pytest.approx(1.0, abs=1e-4), name
        raw, s = layer.parametrizations.weight.original, float(layer.parametrizations.weight[0].s)
        assert one_sparse_gain(layer, size, raw) == pytest.approx(s, rel=1e-4) and abs(s - 1) > 1e-3, name


class _NaNAtIter(Hook):
    """Puts one NaN into the first SAN layer's weight just before iteration ``at``."""

    priority = "LOWEST"

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if runner.iter == self.at:
            hook = fx.hooks_of(runner)[0]
            name, layer = next(iter(hook.san.layers.items()))
            self.name = name
            with torch.no_grad():
                layer.weight.view(-1)[0] = float("nan")


@needs_data
def test_sync_free_nan_surfaces_at_the_next_logging_iteration(tmp_path: Path) -> None:
    HOOKS.register_module(name="SANTestNaNHook", module=_NaNAtIter, force=True)
    cfg = _cfg(tmp_path, 8, sync_free=True, log_interval=4)
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type="SANTestNaNHook", at=5)]
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=r"^SAN: layers \[.*'convs\.0'.*\] had NaN/Inf weights at a sync-free") as e:
        runner.train()
    assert "\n" not in str(e.value)
    hook, probe = fx.hooks_of(runner)
    assert runner.iter == 7 and probe.d_steps == 8  # not at the NaN's iteration 5: at the log after iteration 8
    assert hook.san.calls == 8  # the sync-free calls after the NaN were counted, their error delayed to the log


@needs_data
@pytest.mark.parametrize("save_at", [None, 6], ids=["epoch-end", "checkpoint"])
def test_sync_free_nan_surfaces_with_log_interval_0(tmp_path: Path, save_at: int | None) -> None:
    HOOKS.register_module(name="SANTestNaNHook", module=_NaNAtIter, force=True)
    cfg = _cfg(tmp_path, 8, sync_free=True, log_interval=0)
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type="SANTestNaNHook", at=2)]
    every = save_at or 10**9  # None: no checkpoint at all (not even the last), so only the epoch end checks
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=every, by_epoch=False, save_last=bool(save_at))
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=r"^SAN: layers \[.*'convs\.0'.*\] had NaN/Inf weights at a sync-free") as e:
        runner.train()
    assert "\n" not in str(e.value)
    hook, probe = fx.hooks_of(runner)
    assert hook.log_interval == 0 and "train/san/convs.0" not in runner.message_hub.log_scalars  # no logging
    if save_at is None:  # the IterBasedTrainLoop's only epoch end: after all 8 iterations
        assert probe.d_steps == hook.san.calls == 8
    else:  # before the checkpoint after iteration 6 is written
        assert probe.d_steps == hook.san.calls == 6
        assert not list((tmp_path / "run").rglob("*.pth"))


@needs_data
@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
def test_load_from_sn_baseline_in_both_forms(tmp_path: Path, form: str) -> None:
    data = fx.cifar_png_folder(tmp_path / "cifar")
    baseline = Runner.from_cfg(fx.tiny_cfg(fx.SNGAN_CNN_SN, tmp_path / "sn", data, iters=1, name="sn", batch=2))
    baseline.train()
    baseline.save_checkpoint(str(tmp_path), "sn.pth")
    sn_weight = baseline.model.discriminator.convs[0].weight_orig.detach().clone()
    cfg = _cfg(tmp_path, 1, form=form)
    cfg.load_from = str(tmp_path / "sn.pth")
    runner = Runner.from_cfg(cfg)
    loaded = {}
    conv = runner.model.discriminator.convs[0]

    def record(module: torch.nn.Module, args: tuple) -> None:  # the loaded raw W, before SAN's first normalization
        weight = module.parametrizations.weight.original if form == "reparametrize" else module.weight
        loaded.setdefault("w", weight.detach().clone())

    handle = conv.register_forward_pre_hook(record)
    runner.train()
    handle.remove()
    assert torch.equal(loaded["w"], sn_weight)  # SN's weight_orig became W (rescale) or the raw W of W / s
    san = fx.hooks_of(runner)[0].san
    for name, layer in san.layers.items():
        assert one_sparse_gain(layer, san.input_sizes.get(name)) == pytest.approx(1.0, abs=1e-4), name


@needs_data
def test_reparametrized_sync_free_resume_equals_uninterrupted(tmp_path: Path) -> None:
    def run(name: str, iters: int, resume_from: str = "") -> Any:
        cfg = _cfg(tmp_path / name, iters, form="reparametrize", sync_free=True, filter_ratio=0.5)
        cfg.default_hooks.checkpoint.interval = 2
        cfg.resume, cfg.load_from = bool(resume_from), resume_from or None
        runner = Runner.from_cfg(cfg)
        runner.train()
        return runner

    full = run("full", 4)
    run("first", 2)
    resumed = run("resumed", 4, str(tmp_path / "first" / "run" / "iter_2.pth"))
    full_san, resumed_san = fx.hooks_of(full)[0].san, fx.hooks_of(resumed)[0].san
    assert resumed_san.calls == full_san.calls == 4 and fx.hooks_of(resumed)[0].renormalized_after_load == {}
    expected, got = fx.model_state(full), fx.model_state(resumed)
    assert any(k.endswith("parametrizations.weight.0.s") for k in got) and expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
