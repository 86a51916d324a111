"""SAN's state in StudioGAN's D checkpoints (stand-in, CI): resume == uninterrupted, SN checkpoints, warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import san_studiogan
import torch
from san_studiogan import SAN_STATE_KEY, SANCheckpointWarning
from san_studiogan.sn_checkpoint import remap_optimizer_state
from standins import studiogan_standin as sg
from standins.studiogan_fixtures import constants, write_cfg

from san_core import convert_spectral_norm_state_dict

SUBSETS = {"d_san_filter_ratio": 0.5, "d_san_interval": 3}


@pytest.fixture
def standin():
    san_studiogan.install(sg, sg, sg, sg)
    yield sg
    san_studiogan.uninstall()


def cfgs_for(tmp_path: Path, model: dict, name: str = "cfg.yaml"):
    cfgs = sg.Configurations(write_cfg(tmp_path, model, name))
    cfgs.update_cfgs({"seed": 3, "mixed_precision": False}, super="RUN")
    return cfgs


def san_cfgs(tmp_path: Path, model: dict, name: str = "san.yaml"):
    return cfgs_for(tmp_path, {"MODEL": {"apply_d_san": True, **model}}, name)


def resume(cfgs, ckpt_dir: Path, steps: int):
    """Fresh G, D and optimizers, ``load_StudioGAN_ckpts`` from ``ckpt_dir``, then ``steps`` more D steps."""
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    o = cfgs.OPTIMIZATION
    assert sg.load_StudioGAN_ckpts(str(ckpt_dir), False, Gen, Dis, o.g_optimizer, o.d_optimizer, True, cfgs.RUN)[2] == 4
    calls = o.d_san.calls
    sg.train_d(cfgs, Gen, Dis, steps, start=4)
    return Dis, calls


def d_ckpt(ckpt_dir: Path) -> Path:
    return next(ckpt_dir.glob("model=D-current-weights-step=*.pth"))


def test_resume_is_bit_for_bit_with_subsets_and_interval(standin, tmp_path):
    """4 steps + save + load into fresh objects + 4 steps == 8 steps (r = 0.5: random subsets; N = 3)."""
    cfgs = san_cfgs(tmp_path, SUBSETS)
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.train_d(cfgs, Gen, Dis, 8)
    reference, reference_san = Dis.state_dict(), cfgs.OPTIMIZATION.d_san.state_dict()
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.train_d(cfgs, Gen, Dis, 4)
    sg.save(cfgs, Gen, Dis, 4, str(tmp_path))
    saved = torch.load(d_ckpt(tmp_path))
    assert saved[SAN_STATE_KEY]["calls"] == 4 and saved["step"] == 4 and saved["run_name"] == "standin"
    assert SAN_STATE_KEY not in torch.load(next(tmp_path.glob("model=G-*.pth")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SANCheckpointWarning)
        resumed, calls = resume(cfgs, tmp_path, 4)
    assert calls == 4 and cfgs.OPTIMIZATION.d_san.calls == 8
    assert all(torch.equal(reference[k], v) for k, v in resumed.state_dict().items())
    assert torch.equal(cfgs.OPTIMIZATION.d_san.generator.get_state(), reference_san["generator"])
    state = torch.load(d_ckpt(tmp_path))  # without SAN's state (a checkpoint of an SN run, or of older code) ...
    del state[SAN_STATE_KEY]
    torch.save(state, d_ckpt(tmp_path))
    with pytest.warns(SANCheckpointWarning, match="has no SAN state .* SAN starts afresh .* not the uninterrupted"):
        diverged, calls = resume(cfgs, tmp_path, 4)
    assert calls == 0  # ... the counter restarts and the run diverges: what this test guards against
    assert not all(torch.equal(reference[k], v) for k, v in diverged.state_dict().items())


def test_checkpoint_loads_without_san_studiogan(standin, tmp_path):
    cfgs = san_cfgs(tmp_path, SUBSETS)
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.train_d(cfgs, Gen, Dis, 2)
    sg.save(cfgs, Gen, Dis, 2, str(tmp_path))
    san_studiogan.uninstall()  # StudioGAN's own loader reads its keys by name: the extra one is ignored
    assert "__san_studiogan_original__" not in dir(sg.load_ckpt)
    assert sg.load_ckpt(Dis, None, str(d_ckpt(tmp_path)), load_model=True, load_misc=True) == (3, "standin", 2)


@pytest.mark.parametrize("normalize_first", [False, True])
def test_sn_checkpoint_loads_into_a_san_d(standin, tmp_path, normalize_first):
    """weight_orig becomes weight; Adam's moments follow their parameter (SN puts weight after bias)."""
    sn = cfgs_for(tmp_path, {"MODEL": {"apply_d_sn": True}}, "sn.yaml")
    Gen, sn_dis = sg.build(sn, 0, broadcast=False)
    sg.train_d(sn, Gen, sn_dis, 2)
    sg.save(sn, Gen, sn_dis, 4, str(tmp_path))
    sn_weights = sn_dis.state_dict()
    sn_moments = {n: sn.OPTIMIZATION.d_optimizer.state[p]["exp_avg"] for n, p in sn_dis.named_parameters()}
    assert SAN_STATE_KEY not in torch.load(d_ckpt(tmp_path))
    cfgs = san_cfgs(tmp_path, {"d_san_normalize_first": normalize_first})
    with pytest.warns(SANCheckpointWarning, match=r"has no SAN state .*weight_orig\) were converted"):
        Dis, calls = resume(cfgs, tmp_path, 0)
    assert calls == 0
    for name, param in Dis.named_parameters():
        sn_name = name.replace(".weight", ".weight_orig") if f"{name}_orig" in sn_weights else name
        assert torch.equal(cfgs.OPTIMIZATION.d_optimizer.state[param]["exp_avg"], sn_moments[sn_name])
        assert torch.equal(param, sn_weights[sn_name]) == (not normalize_first or name.endswith("bias"))
    normalized = all(abs(c - 1) < 1e-4 for c in constants(cfgs.OPTIMIZATION.d_san).values())
    assert normalized == normalize_first
    sg.train_d(cfgs, Gen, Dis, 1, start=4)  # Adam steps with the re-ordered moments
    assert cfgs.OPTIMIZATION.d_san.calls == 1


def test_sn_optimizer_state_that_does_not_fit_is_left_out(standin, tmp_path):
    sn = cfgs_for(tmp_path, {"MODEL": {"apply_d_sn": True}}, "sn.yaml")
    Gen, sn_dis = sg.build(sn, 0, broadcast=False)
    sg.train_d(sn, Gen, sn_dis, 1)
    sg.save(sn, Gen, sn_dis, 4, str(tmp_path))
    state = torch.load(d_ckpt(tmp_path))
    state["optimizer"]["param_groups"] *= 2
    torch.save(state, d_ckpt(tmp_path))
    cfgs = san_cfgs(tmp_path, {})
    with pytest.warns(SANCheckpointWarning, match="D optimizer state was not loaded .expected one parameter group"):
        Dis, _ = resume(cfgs, tmp_path, 0)
    assert not cfgs.OPTIMIZATION.d_optimizer.state
    assert torch.equal(Dis.conv0.weight, state["state_dict"]["conv0.weight_orig"])
    keys = list(convert_spectral_norm_state_dict(state["state_dict"]))
    bad = {**state["optimizer"], "param_groups": state["optimizer"]["param_groups"][:1]}
    bad["state"] = {i: {"exp_avg": torch.zeros(7)} for i in bad["state"]}
    message = remap_optimizer_state(bad, keys, Dis, cfgs.OPTIMIZATION.d_optimizer)
    assert message == "exp_avg of conv0.weight has shape (7,), expected (8, 3, 3, 3)"
    assert "with other names" in remap_optimizer_state(bad, keys[1:], Dis, cfgs.OPTIMIZATION.d_optimizer)


def test_san_state_that_does_not_fit_warns_and_yaml_settings_win(standin, tmp_path):
    cfgs = san_cfgs(tmp_path, SUBSETS)
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.train_d(cfgs, Gen, Dis, 4)
    sg.save(cfgs, Gen, Dis, 4, str(tmp_path))
    other = san_cfgs(tmp_path, {**SUBSETS, "d_san_interval": 2, "d_san_seed": 99}, "other.yaml")
    with pytest.warns(SANCheckpointWarning, match=r"SAN settings differ from this run's \(interval: 3 -> 2\)") as got:
        _, calls = resume(other, tmp_path, 0)
    assert len(got) == 1 and calls == 4 and other.OPTIMIZATION.d_san.config["interval"] == 2
    fewer = san_cfgs(tmp_path, {"d_san_exclude": "embedding"}, "fewer.yaml")
    with pytest.warns(SANCheckpointWarning, match=r"SAN state that does not fit this D .*unexpected \['embedding'\]"):
        _, calls = resume(fewer, tmp_path, 0)
    assert calls == 0


def test_freeze_d_fine_tuning_starts_san_afresh(standin, tmp_path):
    """-freezeD: StudioGAN starts a new run (step 0) from the loaded D; SAN does too, without a warning."""
    cfgs = san_cfgs(tmp_path, SUBSETS)
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.train_d(cfgs, Gen, Dis, 4)
    sg.save(cfgs, Gen, Dis, 4, str(tmp_path))
    weights = Dis.state_dict()
    for normalize_first in (False, True):
        fine = san_cfgs(tmp_path, {"d_san_normalize_first": normalize_first}, f"fine{normalize_first}.yaml")
        _, fresh = sg.build(fine, 0, broadcast=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error", SANCheckpointWarning)
            sg.load_ckpt(model=fresh, optimizer=None, ckpt_path=str(d_ckpt(tmp_path)), load_model=True, is_freezeD=True)
        assert fine.OPTIMIZATION.d_san.calls == 0
        assert all(torch.equal(weights[k], v) for k, v in fresh.state_dict().items()) != normalize_first
        assert all(abs(c - 1) < 1e-4 for c in constants(fine.OPTIMIZATION.d_san).values()) == normalize_first


def test_save_adds_state_only_for_the_live_san_d(standin, tmp_path):
    cfgs = san_cfgs(tmp_path, {})
    _, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.save_model("D", "current", 1, str(tmp_path), {"state_dict": {k: v.clone() for k, v in Dis.state_dict().items()}})
    assert SAN_STATE_KEY not in torch.load(d_ckpt(tmp_path))  # copies are not this D's weights
    states = {"state_dict": Dis.state_dict()}
    sg.save_model(model="D", when="current", step=2, ckpt_dir=str(tmp_path), states=states)
    assert torch.load(d_ckpt(tmp_path))[SAN_STATE_KEY]["layers"] == list(cfgs.OPTIMIZATION.d_san.layers)
    assert list(states) == ["state_dict"]  # the caller's dict is left as it was
    assert [p.name for p in tmp_path.glob("model=D-*")] == ["model=D-current-weights-step=2.pth"]
