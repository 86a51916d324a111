"""Training does not depend on when (or how often) a run is evaluated, nor on its step budget.

The first ``N`` generator steps of a run are bit-for-bit the same (CPU) whatever ``eval_every`` and ``steps`` are:
G, D, both Adam states, SAN's state, the z / GP / data-order streams and the logged losses. And one evaluation
(``evaluate_generator``, ``critic_scale``, ``effective_constants``) leaves every piece of training state as it was:
weights, buffers (spectral norm's u/v, BatchNorm's running stats), ``.grad``, train/eval flags, the global and the
run's random streams, and SAN's bookkeeping (calls, pending first-use normalizations, recorded input sizes).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from test_side_by_side import _spec  # the tiny CNN run spec of the resume test

from benchmarks.gan import metrics
from benchmarks.gan.critic_probe import critic_scale
from benchmarks.gan.data import Sampler, load_cifar10
from benchmarks.gan.feature_nets import make_feature_net
from benchmarks.gan.train import Run, _probe_batch, train_run

N = 4  # generator steps compared
CPU = torch.device("cpu")


def _assert_same(a: Any, b: Any, where: str) -> None:
    """Bitwise equality of nested dicts/lists of tensors and numbers."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} ≠ {sorted(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} ≠ {b!r}"


@pytest.mark.parametrize("treatment", ["san", "sn", "san-r25", "gp"])
def test_first_steps_do_not_depend_on_eval_schedule_or_budget(tmp_path, treatment):
    data, net = load_cifar10("fake:32"), make_feature_net("random")
    ref = metrics.reference_stats(net, data.x, data.name, 32, tmp_path / "cache", CPU)

    def stopped_at_n(steps: int, eval_every: int) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = _spec(treatment, steps, eval_every)
        result = train_run(spec, tmp_path / f"s{steps}-e{eval_every}", data, net, ref, CPU, max_steps=N)
        assert not result["finished"] and result["steps_done"] == N
        state = torch.load(spec.run_dir(tmp_path / f"s{steps}-e{eval_every}") / "checkpoint.pt", weights_only=False)
        return state, result

    often, often_result = stopped_at_n(2 * N, 1)  # evaluated after every step
    rarely, rarely_result = stopped_at_n(5 * N, 100)  # evaluated at step 0 only (and at the stop)
    assert len(often["history"]["eval"]) > len(rarely["history"]["eval"])  # the schedules did differ
    _assert_same(often["run"], rarely["run"], "run")  # G, D, opt_g, opt_d, SAN, z/GP streams
    _assert_same(often["sampler"], rarely["sampler"], "sampler")
    _assert_same(often["history"]["loss"], rarely["history"]["loss"], "loss")
    assert often_result["history"]["san_constants"] == rarely_result["history"]["san_constants"]
    # a run whose whole budget is N steps (its last step is logged and scored as the end) trains the same weights
    spec = _spec(treatment, N, 3)
    assert train_run(spec, tmp_path / "finished", data, net, ref, CPU, keep_models=True)["finished"]
    final = torch.load(spec.run_dir(tmp_path / "finished") / "final_models.pt")
    _assert_same(final, {"G": rarely["run"]["G"], "D": rarely["run"]["D"]}, "final")


def _training_state(run: Run) -> dict[str, Any]:
    """Everything a training step reads: weights, buffers, grads, modes, random streams, SAN's bookkeeping."""
    modules = [*run.G.modules(), *run.D.modules()]
    grads = {f"{m}.{n}": p.grad for m, net in (("G", run.G), ("D", run.D)) for n, p in net.named_parameters()}
    san = run.treat.san
    return copy.deepcopy({
        "G": run.G.state_dict(), "D": run.D.state_dict(), "grads": grads,
        "training": [m.training for m in modules], "requires_grad": [p.requires_grad for p in run.D.parameters()],
        "rng": torch.get_rng_state(), "z_gen": run.z_gen.get_state(), "gp_gen": run.gp_gen.get_state(),
        "san": None if san is None else {
            "state": san.state_dict(), "calls": san.calls, "pending": sorted(san._pending),
            "seen_sizes": san.seen_sizes, "input_sizes": san.input_sizes, "generator": san.generator.get_state(),
        },
    })  # fmt: skip


@pytest.mark.parametrize("treatment", ["san", "sn"])
def test_one_evaluation_leaves_the_training_state_untouched(tmp_path, treatment):
    data, net = load_cifar10("fake:32"), make_feature_net("random")
    ref = metrics.reference_stats(net, data.x, data.name, 32, tmp_path / "cache", CPU)
    spec = _spec(treatment, 10, 1)
    run, sampler = Run(spec, CPU), Sampler(len(data), spec.batch, spec.seed)
    run.d_step(data, sampler)
    run.g_step()
    run.d_step(data, sampler)  # D (and G, from the generator step) now hold gradients
    assert any(p.grad is not None for p in run.D.parameters()) and any(p.grad is not None for p in run.G.parameters())
    assert any("running_mean" in k for k in run.G.state_dict())  # BatchNorm statistics are part of what is compared
    run.G.train()
    run.D.train()
    before = _training_state(run)
    probe = _probe_batch(data, spec, CPU)
    metrics.evaluate_generator(net, run.G, ref, spec.n_eval, z_dim=spec.setup.z_dim, num_classes=0, device=CPU,
                               batch=spec.eval_batch)  # fmt: skip
    critic_scale(run, probe)
    run.treat.effective_constants()
    _assert_same(_training_state(run), before, "state")
