"""san_studiogan against a from-scratch StudioGAN stand-in (CI): options, D's modules, SAN's stepping, DDP workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import san_studiogan
import torch
import torch.multiprocessing as mp
import yaml
from san_studiogan import SANConfigError, builders
from standins import studiogan_standin as sg
from standins.studiogan_fixtures import CONFIGS, build, constants, d_step, write_cfg
from standins.studiogan_fixtures import standin_cfgs as _standin_cfgs
from torch import nn


@pytest.fixture
def standin():
    san_studiogan.install(sg, sg, sg, sg)
    yield sg
    san_studiogan.uninstall()


def standin_cfgs(tmp_path: Path, model=None, loss=None):
    return _standin_cfgs(sg, tmp_path, model, loss)


# ---------------------------------------------------------------------------------------------- options
def test_options_registered_before_the_strict_loader(standin, tmp_path):
    cfgs = standin_cfgs(tmp_path, {"d_san_interval": 3, "d_san_targets": ["conv*"], "d_san_gain": 1.3})
    assert (cfgs.MODEL.apply_d_san, cfgs.MODEL.d_san_interval, cfgs.MODEL.d_san_filter_ratio) == (True, 3, 1.0)
    options = cfgs.MODULES.d_san
    assert (options.interval, options.targets, options.gain, options.seed) == (3, ("conv*",), 1.3, None)
    assert options.host[:2] == (sg.__name__, sg.__name__)
    plain = sg.Configurations(write_cfg(tmp_path, {"MODEL": {"apply_d_sn": True}}, "sn.yaml"))
    assert plain.MODEL.apply_d_san is False and not hasattr(plain.MODULES, "d_san")
    with pytest.raises(AttributeError, match=r"MODEL\.not_an_option"):  # StudioGAN's own strictness is intact
        standin_cfgs(tmp_path, {"not_an_option": 1})


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"MODEL": {"apply_d_san": True, "d_san_intervall": 2}},
            "unknown SAN option MODEL.d_san_intervall; did you mean d_san_interval?",
        ),
        ({"MODEL": {"apply_g_san": True}}, "unknown SAN option MODEL.apply_g_san"),
        ({"LOSS": {"d_san_interval": 2}}, "SAN options belong under MODEL, got LOSS.d_san_interval"),
    ],
)
def test_unknown_or_misplaced_key_is_one_clear_error(standin, tmp_path, sections, message):
    with pytest.raises(SANConfigError) as err:
        sg.Configurations(write_cfg(tmp_path, sections))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("model", "loss", "message"),
    [
        ({"apply_d_sn": True}, {}, "apply_d_sn: True normalize the same discriminator twice"),
        ({}, {"apply_wc": True, "wc_bound": 0.01}, "expected LOSS.apply_wc: False"),
        ({"backbone": "stylegan2"}, {}, "not supported with MODEL.backbone 'stylegan2'"),
        ({"backbone": "stylegan3"}, {}, "not supported with MODEL.backbone 'stylegan3'"),
        (
            {"apply_d_san": False, "d_san_interval": 5},
            {},
            "MODEL.d_san_interval is set to 5 but MODEL.apply_d_san is False",
        ),
        ({"apply_d_san": "yes"}, {}, "MODEL.apply_d_san: expected True or False, got 'yes'"),
        ({"d_san_interval": 0}, {}, "MODEL.d_san_interval: expected an int >= 1, got 0"),
        ({"d_san_filter_ratio": 1.5}, {}, "MODEL.d_san_filter_ratio: expected a number in (0, 1], got 1.5"),
        ({"d_san_gain": -1}, {}, 'MODEL.d_san_gain: expected "N/A" or a number > 0, got -1'),
        ({"d_san_stride_mode": "fast"}, {}, "MODEL.d_san_stride_mode: expected one of ('paper', 'exact'), got 'fast'"),
        ({"d_san_targets": []}, {}, 'MODEL.d_san_targets: expected "N/A", a glob string or a list of glob strings'),
        ({"d_san_seed": -2}, {}, 'MODEL.d_san_seed: expected "N/A" or an int >= 0, got -2'),
        ({"d_san_circular_padding": "no"}, {}, "MODEL.d_san_circular_padding: expected True or False, got 'no'"),
    ],
)
def test_bad_combination_or_value_is_one_clear_error(standin, tmp_path, model, loss, message):
    with pytest.raises(SANConfigError) as err:
        standin_cfgs(tmp_path, model, loss)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------- modules
def test_d_slots_swapped_and_sn_architecture_kept(standin, tmp_path):
    cfgs = standin_cfgs(tmp_path)
    mods = cfgs.MODULES
    assert (mods.d_conv2d, mods.d_deconv2d, mods.d_linear, mods.d_embedding) == (
        builders.san_conv2d,
        builders.san_deconv2d,
        builders.san_linear,
        builders.san_embedding,
    )
    assert (mods.g_conv2d, mods.g_linear) == (sg.conv2d, sg.linear)  # G untouched
    _, Dis = build(cfgs, sg)
    assert cfgs.MODEL.apply_d_sn is False and Dis.apply_d_sn is True
    assert not [m for m in Dis.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {m.padding_mode for m in Dis.modules() if isinstance(m, nn.Conv2d)} == {"circular"}
    sn_cfgs = sg.Configurations(write_cfg(tmp_path, {"MODEL": {"apply_d_sn": True}}, "sn.yaml"))
    _, sn_dis = build(sn_cfgs, sg)
    sn_shapes = {k.replace("weight_orig", "weight"): v.shape for k, v in sn_dis.named_parameters()}
    assert {k: v.shape for k, v in Dis.named_parameters()} == sn_shapes
    bn_cfgs = sg.Configurations(write_cfg(tmp_path, {"MODEL": {}}, "plain.yaml"))
    assert any(isinstance(m, nn.BatchNorm2d) for m in build(bn_cfgs, sg)[1].modules())
    zeros = standin_cfgs(tmp_path, {"d_san_circular_padding": False})
    assert zeros.MODULES.d_conv2d is builders.san_conv2d_zero_padding
    assert {m.padding_mode for m in build(zeros, sg)[1].modules() if isinstance(m, nn.Conv2d)} == {"zeros"}


def test_builders_pickle_by_reference_and_cfgs_reinstall_patches(standin, tmp_path):
    for fn in (builders.san_conv2d, builders.san_deconv2d, builders.san_linear, builders.san_embedding):
        assert pickle.loads(pickle.dumps(fn)) is fn
    payload = pickle.dumps(standin_cfgs(tmp_path, {"d_san_interval": 4}))
    san_studiogan.uninstall()
    assert not san_studiogan.is_installed(sg)
    save_model, load_ckpt = sg.save_model, sg.load_ckpt
    restored = pickle.loads(payload)  # what a spawned DDP worker does with cfgs
    assert san_studiogan.is_installed(sg) and restored.MODULES.d_san.interval == 4
    assert restored.MODULES.d_san.host[3:] == (sg.__name__, sg.__name__)  # checkpoint functions re-patched too
    assert sg.save_model is not save_model and sg.load_ckpt is not load_ckpt


def test_uninstall_restores_the_original_objects():
    originals = [sg.Configurations.__dict__[n] for n in san_studiogan.patch._CONFIG_METHODS]
    loader, save_model, load_ckpt = sg.load_generator_discriminator, sg.save_model, sg.load_ckpt
    assert san_studiogan.install(sg, sg) is True and san_studiogan.install(sg, sg) is False
    assert sg.load_generator_discriminator is not loader
    assert sg.save_model is save_model and sg.load_ckpt is load_ckpt  # no utils/ckpt.py beside the stand-in
    assert san_studiogan.install(sg, sg, sg, sg) is True and san_studiogan.install(sg, sg, sg, sg) is False
    assert sg.save_model is not save_model and sg.load_ckpt is not load_ckpt
    san_studiogan.uninstall()
    assert [sg.Configurations.__dict__[n] for n in san_studiogan.patch._CONFIG_METHODS] == originals
    assert sg.load_generator_discriminator is loader
    assert sg.save_model is save_model and sg.load_ckpt is load_ckpt


def test_install_rejects_modules_without_the_checkpoint_functions():
    with pytest.raises(
        TypeError, match=r"expected StudioGAN's src/utils/ckpt.py, got module 'pickle' .* without load_ckpt"
    ):
        san_studiogan.install(sg, sg, pickle, sg)
    with pytest.raises(
        TypeError, match=r"expected StudioGAN's src/utils/misc.py, got module 'yaml' .* without save_model"
    ):
        san_studiogan.install(sg, sg, sg, yaml)
    assert not san_studiogan.is_installed(sg) and "__san_studiogan_original__" not in dir(sg.load_ckpt)


# ---------------------------------------------------------------------------------------------- stepping
def test_san_after_every_real_d_step_only(standin, tmp_path):
    torch.manual_seed(0)
    cfgs = standin_cfgs(tmp_path)
    Gen, Dis = build(cfgs, sg)
    san, params = cfgs.OPTIMIZATION.d_san, [id(p) for p in Dis.parameters()]
    assert set(san.layers) == {"conv0", "conv1", "linear1", "embedding"}
    assert san.input_sizes == {"conv0": (8, 8), "conv1": (8, 8)}  # learned by the probe pass, before training
    assert max(abs(c - 1) for c in constants(san).values()) > 1e-2  # not normalized yet
    for step in (1, 2):
        d_step(cfgs, Gen, Dis)
        assert san.calls == step
        assert all(abs(c - 1) < 1e-4 for c in constants(san).values())
    cfgs.OPTIMIZATION.d_optimizer.step()  # StudioGAN's extra R1 step is one more real D step
    assert san.calls == 3
    cfgs.OPTIMIZATION.g_optimizer.zero_grad()
    cfgs.LOSS.g_loss(
        Dis(Gen(torch.randn(4, 8), torch.zeros(4, dtype=torch.long)), torch.zeros(4, dtype=torch.long))["adv_output"],
        DDP=False,
    ).backward()
    cfgs.OPTIMIZATION.g_optimizer.step()
    assert san.calls == 3 and [id(p) for p in Dis.parameters()] == params
    assert [id(p) for g in cfgs.OPTIMIZATION.d_optimizer.param_groups for p in g["params"]] == params


def test_interval_targets_and_normalize_first(standin, tmp_path):
    cfgs = standin_cfgs(tmp_path, {"d_san_interval": 2, "d_san_exclude": ["embedding"], "d_san_normalize_first": True})
    Gen, Dis = build(cfgs, sg)
    san = cfgs.OPTIMIZATION.d_san
    assert "embedding" not in san.layers and san.calls == 0
    assert all(abs(c - 1) < 1e-4 for c in constants(san).values())  # normalized once before the first step
    d_step(cfgs, Gen, Dis)
    assert san.calls == 1 and any(abs(c - 1) > 1e-4 for c in constants(san).values())
    d_step(cfgs, Gen, Dis)
    assert san.calls == 2 and all(abs(c - 1) < 1e-4 for c in constants(san).values())


def test_gradscaler_skipped_d_step_is_not_counted(standin, tmp_path):
    cfgs = standin_cfgs(tmp_path)
    _, Dis = build(cfgs, sg)
    san, scaler = cfgs.OPTIMIZATION.d_san, torch.amp.GradScaler("cpu")
    before = {k: v.clone() for k, v in Dis.state_dict().items()}
    out = Dis(torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))["adv_output"]
    scaler.scale(out.sum() * float("inf")).backward()
    scaler.step(cfgs.OPTIMIZATION.d_optimizer)
    scaler.update()
    assert san.calls == 0 and all(torch.equal(before[k], v) for k, v in Dis.state_dict().items())


def test_same_result_on_every_rank_with_subsets(standin, tmp_path):
    """Ranks seed torch with seed + rank; SAN's kernel subsets (r < 1) come from its own seeded generator."""
    results = []
    for rank, d_san_seed in ((0, "N/A"), (1, "N/A"), (0, 7)):
        cfgs = standin_cfgs(tmp_path, {"d_san_filter_ratio": 0.5, "d_san_seed": d_san_seed})
        torch.manual_seed(0)
        _, Dis = build(cfgs, sg, seed=11)
        assert cfgs.OPTIMIZATION.d_san.config["seed"] == (11 if d_san_seed == "N/A" else 7)
        torch.manual_seed(100 + rank)  # rank-dependent global RNG, as StudioGAN's fix_seed(seed + rank)
        for _ in range(3):
            cfgs.OPTIMIZATION.d_optimizer.zero_grad()
            Dis(torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))["adv_output"].sum().backward()
            for p in Dis.parameters():
                p.grad = torch.ones_like(p)
            cfgs.OPTIMIZATION.d_optimizer.step()
        results.append(Dis.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert not all(torch.equal(results[0][k], results[2][k]) for k in results[0])


def test_spawned_ddp_workers_reinstall_agree_and_resume(standin, tmp_path):
    """Rank 0 saves after 3 steps, both ranks resume into fresh objects: 3 + 3 steps == 6 uninterrupted, bit for bit."""
    cfgs = standin_cfgs(tmp_path, {"d_san_filter_ratio": 0.5, "d_san_interval": 2})
    cfgs.update_cfgs({"seed": 5}, super="RUN")
    san_studiogan.uninstall()  # the workers must re-install from the pickled cfgs alone
    mp.spawn(sg.train_worker, args=(cfgs, 2, str(tmp_path / "init"), 3, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["installed"] and r1["installed"] and r0["calls"] == r1["calls"] == 3 and r0["pid"] != r1["pid"]
    assert set(r0["circular"]) == {"circular"}
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])
    assert r0["resumed_calls"] == r1["resumed_calls"] == 3  # SAN's step counter restored on every rank
    for r in (r0, r1):
        assert all(torch.equal(r["resumed"][k], r["uninterrupted"][k]) for k in r["uninterrupted"])
    assert all(torch.equal(r0["resumed"][k], r1["resumed"][k]) for k in r0["resumed"])
    assert not all(torch.equal(r0["weights"][k], r0["resumed"][k]) for k in r0["weights"])  # it did train on


# ---------------------------------------------------------------------------------------------- configs
def test_san_configs_differ_from_their_sn_baselines_in_one_line():
    for name in ("SNGAN-CNN", "SNGAN", "BigGAN"):
        sn = (CONFIGS / f"{name}-SN.yaml").read_text().splitlines()
        san = (CONFIGS / f"{name}-SAN.yaml").read_text().splitlines()
        diff = [(a, b) for a, b in zip(sn, san) if a != b and not a.startswith("#")]
        assert len(sn) == len(san) and diff == [("  apply_d_sn: True", "  apply_d_san: True")]
        cfg = yaml.safe_load("\n".join(san))
        assert cfg["LOSS"]["adv_loss"] == "hinge"
        opt = cfg["OPTIMIZATION"]
        assert (opt["d_lr"], opt["beta1"], opt["beta2"], opt["batch_size"], opt["d_updates_per_step"]) == (
            0.0002,
            0.5,
            0.9,
            64,
            1,
        )
