"""Issue 12's collapse diagnosis: the ablation treatments (san-scaled, san-lr, san-ns) do what they say, and the
mechanism diagnostics (hinge saturation, G gradient norm, input-gradient alignment, init scale vs SN) equal
brute-force recomputations."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from benchmarks import side_by_side
from benchmarks.gan import calibrate, diagnosis, losses
from benchmarks.gan.critic_probe import gradient_alignment
from benchmarks.gan.data import Sampler, load_cifar10
from benchmarks.gan.models_cnn import CNNCritic
from benchmarks.gan.setups import get_setup
from benchmarks.gan.train import Run, RunSpec
from benchmarks.gan.treatments import apply_treatment, parse_treatment


def _spec(treatment: str) -> RunSpec:
    return RunSpec(get_setup("cnn", 16, 8), parse_treatment(treatment), seed=0, steps=3, batch=8, eval_every=2,
                   n_eval=16, eval_batch=16, ckpt_every=100, log_every=1)  # fmt: skip


def test_losses_and_saturation_equal_float64_formulas():
    gen = torch.Generator().manual_seed(0)
    real, fake = 3 * torch.randn(257, 1, generator=gen), 3 * torch.randn(257, 1, generator=gen)
    r, f = real.double(), fake.double()
    ns = (-torch.log(torch.sigmoid(r))).mean() + (-torch.log(1 - torch.sigmoid(f))).mean()
    assert float(losses.d_ns(real, fake)) == pytest.approx(float(ns), rel=1e-6)
    assert float(losses.g_ns(fake)) == pytest.approx(float((-torch.log(torch.sigmoid(f))).mean()), rel=1e-6)
    sat = losses.hinge_saturation(real, fake).tolist()
    brute = [sum(v > 1 for v in real.flatten().tolist()) / 257, sum(v < -1 for v in fake.flatten().tolist()) / 257]
    assert sat == pytest.approx(brute, rel=1e-6) and 0 < min(brute)
    # a saturated sample contributes no critic gradient: exactly the ones counted
    real.requires_grad_(True)
    losses.d_hinge(real, fake).backward()
    assert ((real.grad == 0) == (real.detach() > 1)).all()
    with pytest.raises(ValueError, match=r"loss: expected one of \['hinge', 'ns'\], got 'wgan'"):
        losses.get_losses("wgan")


def test_calibrated_output_matches_sn_at_init_and_is_saved_with_the_critic():
    torch.manual_seed(3)
    critic = CNNCritic(ch=8)
    initial = copy.deepcopy(critic)
    applied = apply_treatment(parse_treatment("san-scaled"), critic, (torch.zeros(2, 3, 32, 32),))
    probe = (torch.rand(64, 3, 32, 32) * 2 - 1,)
    torch.manual_seed(11)
    rng = torch.get_rng_state()
    info = calibrate.calibrate(critic, applied.initial_critic, probe)
    assert torch.equal(torch.get_rng_state(), rng)  # the run's global stream is left where it was
    torch.manual_seed(11)  # the same power-iteration start as inside calibrate
    sn = apply_treatment(parse_treatment("sn"), copy.deepcopy(initial), (torch.zeros(2, 3, 32, 32),)).critic
    critic.eval()
    sn.eval()
    with torch.no_grad():
        scaled, ref = critic(*probe).abs().mean(), sn(*probe).abs().mean()
        critic.output_scale.fill_(1.0)
        unscaled = critic(*probe).abs().mean()
        critic.output_scale.fill_(info["alpha"])
    assert float(scaled) == pytest.approx(float(ref), rel=1e-5)
    assert info["alpha"] == pytest.approx(float(ref / unscaled), rel=1e-5) and info["alpha"] < 1
    assert info["d_real_san"] == pytest.approx(float(unscaled), rel=1e-6)
    state = critic.state_dict()
    assert float(state["output_scale"]) == info["alpha"]
    twin = apply_treatment(parse_treatment("san-scaled"), CNNCritic(ch=8), (torch.zeros(2, 3, 32, 32),)).critic
    twin.load_state_dict(state)
    twin.eval()
    with torch.no_grad():
        assert torch.equal(twin(*probe), critic(*probe))
    with pytest.raises(ValueError, match="no output_scale buffer"):
        calibrate.calibrate(CNNCritic(ch=8), initial, probe)
    with pytest.raises(ValueError, match="already has an attribute 'output_scale'"):
        calibrate.install_output_scale(critic)


def test_ablations_change_only_their_own_setting():
    base, lr = Run(_spec("san"), torch.device("cpu")), Run(_spec("san-lr"), torch.device("cpu"))
    assert lr.opt_d.param_groups[0]["lr"] == pytest.approx(0.25 * base.opt_d.param_groups[0]["lr"])
    assert lr.opt_g.param_groups[0]["lr"] == base.opt_g.param_groups[0]["lr"] == 2e-4
    ns = Run(_spec("san-ns"), torch.device("cpu"))
    assert (ns.d_loss, ns.g_loss) == (losses.d_ns, losses.g_ns) and (base.d_loss, base.g_loss) == (
        losses.d_hinge, losses.g_hinge)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(base.D.state_dict().values(), lr.D.state_dict().values()))


def test_d_step_saturation_and_g_grad_norm_equal_a_recomputation():
    data = load_cifar10("fake:64")
    run = Run(_spec("san-scaled"), torch.device("cpu"))
    run.D.output_scale.fill_(40.0)  # large outputs: part of each batch saturates
    sampler = Sampler(len(data), 8, 0)
    s_state, z_state = sampler.state_dict(), run.z_gen.get_state()
    with torch.no_grad():
        run.D(torch.zeros(1, 3, 32, 32))  # SAN's first-forward normalization, before both passes below
        x, _ = data.batch(sampler.next(), torch.device("cpu"))
        z, y = run.sample_z()
        real_out, fake_out = run.D(x), run.D(run.G(z, y))
    sampler.load_state_dict(s_state)
    run.z_gen.set_state(z_state)
    loss, sat_real, sat_fake = run.d_step(data, sampler)
    assert loss == pytest.approx(float(losses.d_hinge(real_out, fake_out)), rel=1e-5)
    assert (sat_real, sat_fake) == (float((real_out > 1).float().mean()), float((fake_out < -1).float().mean()))
    assert 0 < sat_real + sat_fake
    _, norm = run.g_step(grad_norm=True)
    brute = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in run.G.parameters()))
    assert norm == pytest.approx(brute, rel=1e-9) and run.g_step()[1] is None


def test_gradient_alignment_equals_brute_force():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 4, 4, generator=gen)
    w = torch.randn(3, 4, 4, generator=gen)
    linear = lambda img: (img * w).flatten(1).sum(1)  # noqa: E731 -- the same gradient w for every sample
    assert gradient_alignment(linear, x, None) == pytest.approx(1.0, abs=1e-12)
    square = lambda img: 0.5 * img.pow(2).flatten(1).sum(1)  # noqa: E731 -- gradient x_i
    u = x.double().flatten(1)
    u = u / u.norm(dim=1, keepdim=True)
    assert gradient_alignment(square, x, None) == pytest.approx(float(u.mean(0).norm()), rel=1e-12)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(48, 1))
    gradient_alignment(critic, x, None)
    assert all(p.grad is None for p in critic.parameters())  # only the input gradient is taken


def test_mechanism_table_pairs_seeds_and_averages_the_logged_steps():
    def result(treatment, seed, d0, sats, calib=None):
        loss = [{"step": i + 1, "d": 1.0, "g": 0.0, "sat_real": s, "sat_fake": s / 2, "g_grad": 2.0 * (i + 1)}
                for i, s in enumerate(sats)]  # fmt: skip
        evals = [{"step": 0, "fid": 9.0, "d_real": d0}, {"step": 2, "fid": 5.0, "d_real": 1.0, "top_class": 0.9,
                                                          "pixel_std": 0.2, "grad_align": 0.5}]  # fmt: skip
        return {"setup": "cnn", "treatment": treatment, "treatment_label": treatment, "seed": seed, "steps_done": 2,
                "fid_name": "FID", "history": {"loss": loss, "eval": evals, "calibration": calib}}  # fmt: skip

    results = [result("sn", 0, 2.0, [0.0, 0.0]), result("sn", 1, 4.0, [0.0, 0.0]),
               result("san", 0, 200.0, [0.2, 0.4]), result("san", 1, 800.0, [0.6, 0.8])]  # fmt: skip
    rows = {r["treatment"]: r for r in diagnosis.rows(results, 0.25)}
    assert rows["san"]["init_ratio_to_sn"] == [100.0, 200.0]  # per seed, not against the mean of SN's seeds
    assert rows["san"]["sat_real"] == pytest.approx([0.3, 0.7]) and rows["san"]["sat_fake"] == pytest.approx(
        [0.15, 0.35])  # fmt: skip
    assert rows["san"]["g_grad"] == [3.0, 3.0] and rows["san"]["collapsed"] == 2  # top class 0.9 ≥ 0.8
    md = "\n".join(diagnosis.markdown(results, 0.25))
    assert "| san | 5 ± 0 | 2/2 | 500 ± 4.2e+02 | 150 ± 71 |" in md


def test_cli_eval_every_and_mechanism_table(tmp_path):
    out = tmp_path / "out"
    args = ["--preset", "test", "--data", "fake:64", "--metric", "random", "--out", str(out), "--setups", "cnn",
            "--treatments", "sn,san-scaled", "--steps", "2", "--eval-every", "1", "--threads", "1"]  # fmt: skip
    assert side_by_side.main(args) == 0
    res = json.loads((out / "side_by_side.json").read_text())
    assert all([e["step"] for e in r["evals"]] == [0, 1, 2] for r in res["runs"])
    assert all({"sat_real", "sat_fake", "g_grad", "grad_align", "d_gap"} <= set(r["evals"][-1]) for r in res["runs"])
    md = (out / "side_by_side.md").read_text()
    assert "#### Mechanism diagnostics (issue 12)" in md and "--eval-every 1" in md
    table = md.split("#### Mechanism diagnostics (issue 12)")[1]
    row = next(line for line in table.splitlines() if line.startswith("| SAN, output × α"))
    assert row.split(" | ")[4] == "1"  # at init its |D(real)| is SN's, by construction
