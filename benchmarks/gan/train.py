"""One GAN training run (one setup × treatment × seed): hinge loss, Adam, resumable, timed, scored.

Per G step: ``n_dis`` critic steps (each: fresh real batch and fresh z, hinge loss (+ λ·GP), backward,
``opt_D.step()``, then SAN's rescale through its optimizer hook), then one generator step with the critic frozen.
Every random draw comes from generators seeded by the run seed (data order ``seed``, z ``seed+1``, GP's ε
``seed+2``, SAN's subsets ``seed``), so all treatments see the same data and noise streams, and a resumed run
continues bit for bit on the same kind of CPU/GPU (other kernels, e.g. AVX2 vs AVX-512 oneDNN, round differently
and the runs drift apart; report headers name the CPU kernels). Evaluation touches no training state, so the
evaluation schedule and the step budget do not change the trained weights (tests/test_gan_determinism.py).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .. import _measure
from .calibrate import calibrate
from .checkpoint import RunFiles
from .collapse import mean_losses
from .critic_probe import critic_scale
from .data import ImageSet, Sampler
from .losses import get_losses, gradient_penalty, hinge_saturation
from .metrics import FeatureNet, evaluate_generator
from .setups import Setup
from .treatments import Treatment, apply_treatment, critic_example

#: Treatment fields that choose how a step is launched, not what it computes (``SAN(cuda_graph=True)`` replays the
#: same sync-free kernels): left out of a run's identity, so committed runs stay reusable when such a field is added.
RUNTIME_ONLY = ("cuda_graph",)


@dataclass
class RunSpec:
    setup: Setup
    treatment: Treatment
    seed: int
    steps: int
    batch: int
    eval_every: int
    n_eval: int
    eval_batch: int = 250
    ckpt_every: int = 500
    log_every: int = 10
    is_splits: int = 1

    def config(self, metric_key: str, data_name: str) -> dict[str, Any]:
        spec = asdict(self)
        spec["treatment"] = {k: v for k, v in spec["treatment"].items() if k not in RUNTIME_ONLY}
        return {**spec, "metric": metric_key, "data": data_name}

    def run_dir(self, root: Path) -> Path:
        return root / "runs" / self.setup.key / self.treatment.key / f"seed{self.seed}"

    def eval_steps(self) -> list[int]:
        return sorted({0, self.steps, *range(0, self.steps, self.eval_every)})


class Run:
    """Models, optimizers, treatment and random streams of one run, with ``state_dict`` for checkpoints."""

    def __init__(self, spec: RunSpec, device: torch.device) -> None:
        self.spec, self.device, s = spec, device, spec.setup
        torch.manual_seed(spec.seed)  # identical G and D initial weights for every treatment
        self.G, self.D = s.make_generator().to(device), s.make_critic().to(device)
        example = critic_example(2, 32, s.num_classes, device)
        self.treat = apply_treatment(spec.treatment, self.D, example, seed=spec.seed)
        self.opt_g = torch.optim.Adam(self.G.parameters(), s.lr, betas=s.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), s.lr * spec.treatment.d_lr_scale, betas=s.betas)
        self.d_loss, self.g_loss = get_losses(spec.treatment.loss)
        self.treat.attach(self.opt_d)
        self.z_gen = torch.Generator().manual_seed(spec.seed + 1)
        self.gp_gen = torch.Generator().manual_seed(spec.seed + 2)

    def sample_z(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        b, s = self.spec.batch, self.spec.setup
        z = torch.randn(b, s.z_dim, generator=self.z_gen).to(self.device)
        y = torch.randint(0, s.num_classes, (b,), generator=self.z_gen).to(self.device) if s.num_classes else None
        return z, y

    def d_step(self, data: ImageSet, sampler: Sampler) -> tuple[float, float, float]:
        """One critic update; returns its loss and the hinge saturation of the batch (``hinge_saturation``)."""
        x, y_real = data.batch(sampler.next(), self.device)
        z, y_fake = self.sample_z()
        with torch.no_grad():
            fake = self.G(z, y_fake)
        labels = y_real if self.spec.setup.num_classes else None
        real_out, fake_out = self.D(x, labels), self.D(fake, y_fake)
        loss = self.d_loss(real_out, fake_out)
        if self.spec.treatment.kind == "gp":
            loss = loss + self.spec.treatment.gp_weight * gradient_penalty(self.D, x, fake, labels, self.gp_gen)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()  # SAN (when attached) rescales the critic's weights here
        value, sat_real, sat_fake = torch.cat([loss.detach().reshape(1), hinge_saturation(real_out, fake_out)]).tolist()
        return value, sat_real, sat_fake

    def g_step(self, grad_norm: bool = False) -> tuple[float, Optional[float]]:
        """One generator update; returns its loss and (``grad_norm``) the global L2 norm of G's gradient."""
        z, y = self.sample_z()
        self.D.requires_grad_(False)
        norm = None
        try:
            loss = self.g_loss(self.D(self.G(z, y), y))
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            if grad_norm:
                grads = [p.grad.detach().double().norm() for p in self.G.parameters() if p.grad is not None]
                norm = float(torch.stack(grads).norm()) if grads else 0.0
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        return float(loss.detach()), norm

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(), "treatment": self.treat.state_dict(),
            "z_gen": self.z_gen.get_state(), "gp_gen": self.gp_gen.get_state(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.treat.load_state_dict(state["treatment"])
        self.z_gen.set_state(state["z_gen"])
        self.gp_gen.set_state(state["gp_gen"])


def _new_history() -> dict[str, Any]:
    return {"eval": [], "san_constants": [], "effective_constants": [], "layer_gains": [], "loss": [], "d_ms": [],
            "g_ms": [], "calibration": None}  # fmt: skip


def train_run(
    spec: RunSpec,
    root: Path,
    data: ImageSet,
    net: FeatureNet,
    ref: dict,
    device: torch.device,
    max_steps: Optional[int] = None,
    keep_models: bool = False,
    deadline: Optional[float] = None,
    on_eval: Optional[Callable[[dict[str, Any]], None]] = None,
) -> dict[str, Any]:
    """Train (or resume, or skip when finished) one run; returns its result dict (``finished`` False if stopped).

    ``deadline`` (a ``time.perf_counter()`` value): stop at the first step that ends after it, evaluate there
    and checkpoint; ``on_eval(result so far)`` is called after every evaluation (partial results as it goes)."""
    files = RunFiles(spec.run_dir(root), spec.config(net.key, data.name))
    done = files.finished()
    if done is not None:
        return {**done, "skipped": True}
    run = Run(spec, device)
    sampler = Sampler(len(data), spec.batch, spec.seed)
    state = files.load_checkpoint(device)
    step, hist, mem, elapsed = 0, _new_history(), {}, {"train_s": 0.0, "eval_s": 0.0, "cpu_s": 0.0}
    if state is not None:
        run.load_state_dict(state["run"])
        sampler.load_state_dict(state["sampler"])
        step, hist, mem, elapsed = state["step"], state["history"], state["memory"], state["elapsed"]
    probe = _probe_batch(data, spec, device)
    if state is None and run.treat.initial_critic is not None:  # san-scaled: α fixed once, at the initial weights
        hist["calibration"] = calibrate(run.D, run.treat.initial_critic, probe)
    evals = set(spec.eval_steps())
    stop = spec.steps if max_steps is None else min(spec.steps, step + max_steps)
    bar = _measure.Progress(stop - step)
    name = f"{spec.setup.key}/{spec.treatment.key}/seed{spec.seed}"

    def evaluate(at: int) -> None:
        t0 = time.perf_counter()
        scores = evaluate_generator(
            net, run.G, ref, spec.n_eval, z_dim=spec.setup.z_dim, num_classes=spec.setup.num_classes,
            device=device, batch=spec.eval_batch, is_splits=spec.is_splits,
        )  # fmt: skip
        after = hist["eval"][-1]["step"] if hist["eval"] else -1
        scores.update(critic_scale(run, probe), **mean_losses(hist["loss"], after, at))
        hist["eval"].append({"step": at, **scores})
        if spec.treatment.sparsity_gains:  # SAN + sparsity gains: re-measure g_l before reading the constants
            hist["layer_gains"].append({"step": at, **(run.treat.refresh_gains(probe) or {})})
        hist["effective_constants"].append({"step": at, "values": run.treat.effective_constants()})
        elapsed["eval_s"] += time.perf_counter() - t0
        if on_eval is not None:
            on_eval({**summarize(spec, net, hist, mem, elapsed, at), "config_hash": files.hash})

    if step == 0 and 0 in evals and not hist["eval"]:
        evaluate(0)
    while step < stop:
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        profile = step == 1 and "d_step_peak_mib" not in mem  # second iteration: warm, measured once
        d_out = []
        for k in range(spec.treatment.n_dis):
            out, ms, mib = _timed(lambda: run.d_step(data, sampler), device, profile and k == 0)
            d_out.append(out)
            _record(hist["d_ms"], mem, "d_step_peak_mib", ms, mib)
            if run.treat.normalized_this_step() and (spec.treatment.interval > 1 or step % spec.log_every == 0):
                calls = run.treat.san.calls if run.treat.san is not None else 0
                hist["san_constants"].append({"step": step, "d_calls": calls, "values": run.treat.san_constants()})
        logged = (step + 1) % spec.log_every == 0 or step + 1 == spec.steps
        (g_loss, g_grad), ms, mib = _timed(lambda g=logged: run.g_step(grad_norm=g), device, profile)
        _record(hist["g_ms"], mem, "g_step_peak_mib", ms, mib)
        step += 1
        elapsed["train_s"] += time.perf_counter() - t_wall
        elapsed["cpu_s"] += time.process_time() - t_cpu
        if logged:
            d, sat_real, sat_fake = (statistics.fmean(v) for v in zip(*d_out))
            hist["loss"].append({"step": step, "d": d, "g": g_loss, "sat_real": sat_real, "sat_fake": sat_fake,
                                 "g_grad": g_grad})  # fmt: skip
        timed_out = deadline is not None and time.perf_counter() > deadline and step < stop
        if step in evals or (timed_out and hist["eval"][-1]["step"] != step):
            evaluate(step)
        if timed_out:
            stop = step
        if step % spec.ckpt_every == 0 or step == stop:
            state = {"run": run.state_dict(), "sampler": sampler.state_dict(), "step": step, "history": hist,
                     "memory": mem, "elapsed": elapsed}  # fmt: skip
            files.save_checkpoint(state)
        last = hist["eval"][-1]
        bar.step(f"{name} step {step}/{spec.steps} {net.fid_name} {last['fid']:.2f} @{last['step']}")
    bar.close()
    result = {**summarize(spec, net, hist, mem, elapsed, step), "config_hash": files.hash}
    if step >= spec.steps:
        files.finish(result, {"G": run.G.state_dict(), "D": run.D.state_dict()} if keep_models else None)
    return result


def _probe_batch(data: ImageSet, spec: RunSpec, device: torch.device, n: int = 256) -> tuple[torch.Tensor, ...]:
    """The first ``n`` training images (fixed, outside the sampler's stream): where sparsity gains and the
    critic's scale on real images are measured."""
    x, y = data.batch(torch.arange(min(n, len(data))), device)
    return (x, y) if spec.setup.num_classes else (x,)


def _timed(fn: Callable[[], Any], device: torch.device, profile: bool) -> tuple[Any, Optional[float], Optional[float]]:
    """``fn()`` with its wall time in ms, or (``profile``) its peak extra memory in MiB instead."""
    if profile:
        value, mib = _measure.peak_extra_mib(fn, device)
        return value, None, mib
    t0 = time.perf_counter()
    value = fn()
    _measure.sync(device)
    return value, 1e3 * (time.perf_counter() - t0), None


def _record(times: list[float], mem: dict, key: str, ms: Optional[float], mib: Optional[float]) -> None:
    if ms is not None:
        times.append(ms)
    if mib is not None:
        mem[key] = mib


def summarize(spec: RunSpec, net: FeatureNet, hist: dict, mem: dict, elapsed: dict, step: int) -> dict[str, Any]:
    """Final/best scores, median step times (warm-up iteration 0 and the profiled iteration 1 excluded)."""
    evals = hist["eval"]
    best = min(evals, key=lambda e: e["fid"]) if evals else None
    d_ms, g_ms = hist["d_ms"][spec.treatment.n_dis :], hist["g_ms"][1:]
    return {
        "setup": spec.setup.key, "setup_label": spec.setup.describe(), "treatment": spec.treatment.key,
        "treatment_label": spec.treatment.label, "n_dis": spec.treatment.n_dis, "seed": spec.seed,
        "steps": spec.steps, "steps_done": step, "finished": step >= spec.steps, "batch": spec.batch,
        "fid_name": net.fid_name, "is_name": net.is_name, "final": evals[-1] if evals else None, "best": best,
        "d_step_ms": statistics.median(d_ms) if d_ms else None, "g_step_ms": statistics.median(g_ms) if g_ms else None,
        "d_step_ms_p10_p90": _p10_p90(d_ms), "g_step_ms_p10_p90": _p10_p90(g_ms), "memory": mem,
        "elapsed": elapsed, "history": {k: v for k, v in hist.items() if k not in ("d_ms", "g_ms")},
    }  # fmt: skip


def _p10_p90(values: list[float]) -> Optional[list[float]]:
    if len(values) < 2:
        return None
    q = statistics.quantiles(values, n=10, method="inclusive")
    return [q[0], q[-1]]
