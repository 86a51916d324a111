"""SANHook's ``diagnostics`` key: ``san_diag/d_abs_mean`` and ``san_diag/g_pixel_std`` logged at ``log_interval`` as
the means over the calls since the previous log (checked against the outputs recorded by the test's own forward
hooks), forward hooks removed after training, none registered by default, no host sync added to any iteration (the
sync counter of test_sync_free.py around each iteration, on against off), wrappers unwrapped, bad values refused."""

# ruff: noqa: E402  (the extra's imports follow the module-level skip)
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
REASON = f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
if MISSING:  # module-level names below use the extra's classes, so skip before they are defined
    pytest.skip(REASON, allow_module_level=True)

import san_mmagic
from mmagic.registry import HOOKS as MMAGIC_HOOKS
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from san_mmagic import diagnostics as diag
from standins import mmagic_fixtures as fx
from test_mmagic_hook_options import _cfg, needs_data
from test_sync_free import count_syncs

D_KEY, G_KEY = "train/san_diag/d_abs_mean", "train/san_diag/g_pixel_std"


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_value_names_expected_and_got(value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^SANHook: expected diagnostics to be True or False, got {value!r}$"):
        MMAGIC_HOOKS.build(dict(type="SANHook", diagnostics=value))
    assert san_mmagic.SANHook().diagnostics is False and san_mmagic.SANHook(diagnostics=True).diagnostics is True


def _hook_counts(runner: Any) -> tuple[int, int]:
    return len(runner.model.discriminator._forward_hooks), len(runner.model.generator._forward_hooks)


class _Recorder(Hook):
    """Records every training-mode output of D and G per iteration (its own forward hooks, registered in
    ``before_train`` after SANHook's) and the forward-hook counts of D and G before and during training."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.d: dict[int, list[torch.Tensor]] = {}
        self.g: dict[int, list[torch.Tensor]] = {}
        self.hooks_before: tuple[int, int] = (-1, -1)
        self.hooks_during: set[tuple[int, int]] = set()

    def before_run(self, runner: Any) -> None:
        self.hooks_before = _hook_counts(runner)

    def before_train(self, runner: Any) -> None:
        for name, store in (("discriminator", self.d), ("generator", self.g)):

            def record(module: nn.Module, args: Any, out: torch.Tensor, store: dict = store) -> None:
                if module.training:
                    store.setdefault(runner.iter, []).append(out.detach().clone())

            getattr(runner.model, name).register_forward_hook(record)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.hooks_during.add(_hook_counts(runner))


def _train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iters: int, **keys: Any) -> tuple[Any, _Recorder, list]:
    """A real Runner on the tiny SNGAN config; each iteration (its hooks included) under the sync counter."""
    HOOKS.register_module(name="SANTestDiagRecorder", module=_Recorder, force=True)
    cfg = _cfg(tmp_path, iters, **keys)
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type="SANTestDiagRecorder")]
    runner = Runner.from_cfg(cfg)
    loop, syncs = runner.train_loop, []
    run_iter = loop.run_iter
    monkeypatch.setattr(
        loop, "run_iter", lambda batch: syncs.append(count_syncs(lambda: run_iter(batch), monkeypatch).syncs)
    )
    runner.train()
    recorder = next(h for h in runner.hooks if isinstance(h, _Recorder))
    return runner, recorder, syncs


def _segment_means(per_iter: dict[int, list[torch.Tensor]], segments: list[range], reduce: Any) -> list[float]:
    """Per segment of iterations, the mean of ``reduce`` over every recorded call in it."""
    means = []
    for segment in segments:
        values = [reduce(x) for i in segment for x in per_iter[i]]
        means.append(sum(values) / len(values))
    return means


@needs_data
def test_logged_means_hooks_removed_off_by_default_and_no_added_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on, rec_on, syncs_on = _train(tmp_path / "on", monkeypatch, 5, diagnostics=True, log_interval=2)
    off, rec_off, syncs_off = _train(tmp_path / "off", monkeypatch, 5, log_interval=2)
    segments = [range(0, 2), range(2, 4), range(4, 5)]  # logs after iterations 2 and 4, and the last one (5)
    assert {i: len(v) for i, v in rec_on.d.items()} == {i: 3 for i in range(5)}  # D on fake, real, and in the G step
    assert {i: len(v) for i, v in rec_on.g.items()} == {i: 2 for i in range(5)}  # G in the D step and in the G step

    def abs_mean(x: torch.Tensor) -> float:
        return float(x.double().abs().mean())

    def pixel_std(x: torch.Tensor) -> float:  # independent: per-pixel unbiased std across the batch, float64
        x = x.double()
        n = x.shape[0]
        return float((((x - x.sum(0) / n) ** 2).sum(0) / (n - 1)).sqrt().mean())

    hub = on.message_hub.log_scalars
    logged_d, logged_g = list(hub[D_KEY].data[0]), list(hub[G_KEY].data[0])
    assert logged_d == pytest.approx(_segment_means(rec_on.d, segments, abs_mean), rel=1e-5)
    assert logged_g == pytest.approx(_segment_means(rec_on.g, segments, pixel_std), rel=1e-5)
    assert len(set(logged_d)) == 3 and all(v > 0 for v in logged_g)  # three distinct windows, a real spread
    log = next((tmp_path / "on").rglob("*.log")).read_text()
    assert "san_diag/d_abs_mean" in log and "san_diag/g_pixel_std" in log

    (d0, g0), recorder_own = rec_on.hooks_before, 1
    assert rec_off.hooks_before == (d0, g0)
    assert rec_on.hooks_during == {(d0 + recorder_own + 1, g0 + recorder_own + 1)}  # one on D, one on G, in training
    assert fx.hooks_of(on)[0]._diag is None and _hook_counts(on) == (d0 + recorder_own, g0 + recorder_own)  # removed
    hook_off = fx.hooks_of(off)[0]
    assert hook_off.diagnostics is False and hook_off._diag is None  # off by default: nothing registered or logged
    assert rec_off.hooks_during == {(d0 + recorder_own, g0 + recorder_own)}
    assert not [k for k in off.message_hub.log_scalars if "san_diag" in k]

    assert len(syncs_on) == len(syncs_off) == 5 and any(syncs_off)  # the counter sees MMagic's own loss reads
    assert syncs_on == syncs_off  # per iteration, the log iterations included: the diagnostics add no host sync


def _tiny_gan() -> nn.Module:
    gen = nn.Sequential(nn.Linear(4, 12), nn.Unflatten(1, (3, 2, 2)))
    disc = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    return nn.ModuleDict({"generator": nn.DataParallel(gen), "discriminator": nn.DataParallel(disc)})


def test_wrappers_are_unwrapped_and_only_training_calls_with_a_spread_count() -> None:
    """nn.DataParallel is an MMEngine model wrapper (``is_model_wrapper``), at the top and around D and G, as with
    ``MMSeparateDistributedDataParallel``; the hooks sit on the inner modules and see the calls through the wrappers."""
    torch.manual_seed(0)
    model = _tiny_gan()
    wrapped = nn.DataParallel(model)
    d, g = model.discriminator.module, model.generator.module
    diagnostics = diag.CollapseDiagnostics.of_model(wrapped, "discriminator", san_mmagic.find_submodule)
    assert len(d._forward_hooks) == len(g._forward_hooks) == 1
    assert not model.discriminator._forward_hooks and not model.generator._forward_hooks
    fakes = [model.generator(torch.randn(n, 4)) for n in (5, 3, 1)]  # batch of one: no spread, not counted
    scores = [model.discriminator(x) for x in fakes]
    model.eval()
    model.generator(torch.randn(4, 4))
    model.discriminator(fakes[0])  # eval-mode calls (validation, sampling) are not counted
    taken = diagnostics.take()
    expected_d = sum(float(s.detach().double().abs().mean()) for s in scores) / 3
    expected_g = sum(float(x.double().std(0, unbiased=True).mean()) for x in fakes[:2]) / 2
    assert float(taken[diag.D_ABS_MEAN]) == pytest.approx(expected_d, rel=1e-6)
    assert float(taken[diag.G_PIXEL_STD]) == pytest.approx(expected_g, rel=1e-6)
    assert diagnostics.take() == {}  # reset at each take: nothing since
    diagnostics.remove()
    diagnostics.remove()  # idempotent
    assert not d._forward_hooks and not g._forward_hooks


def test_model_without_generator_logs_the_critic_alone_with_one_info(monkeypatch: pytest.MonkeyPatch) -> None:
    messages: list[str] = []
    monkeypatch.setattr(diag, "print_log", lambda message, **kwargs: messages.append(message))
    critic = nn.Sequential(nn.Linear(3, 1))
    diagnostics = diag.CollapseDiagnostics.of_model(
        nn.ModuleDict({"critic": critic}), "critic", san_mmagic.find_submodule
    )
    assert len(messages) == 1 and "no 'generator'" in messages[0] and diag.G_PIXEL_STD in messages[0]
    out = critic(torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]))
    taken = diagnostics.take()
    assert set(taken) == {diag.D_ABS_MEAN}
    assert float(taken[diag.D_ABS_MEAN]) == pytest.approx(float(out.detach().abs().mean()), rel=1e-6)
    diagnostics.remove()
    assert not critic._forward_hooks
