"""san_studiogan in a real PyTorch-StudioGAN checkout ($SAN_STUDIOGAN_ROOT; skipped without one), on the CPU."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from san_studiogan import SAN_STATE_KEY, SANCheckpointWarning, SANConfigError
from standins.fft_reference import one_sparse_gain
from standins.studiogan_fixtures import (
    CONFIGS,
    DATA,
    ROOT,
    build,
    constants,
    real_ddp_worker,
    real_host,
    real_step,
    sn_discriminator,
    write_cfg,
)
from torch import nn


@pytest.fixture(scope="module")
def studiogan():
    yield from real_host()


@pytest.mark.parametrize("name", ["SNGAN-CNN", "SNGAN", pytest.param("BigGAN", marks=pytest.mark.slow)])
def test_real_studiogan_d_g_steps(studiogan, name):
    config, model = studiogan
    torch.manual_seed(0)
    cfgs = config.Configurations(str(CONFIGS / f"{name}-SAN.yaml"))
    if name == "SNGAN":  # R1 inside the loop, with StudioGAN's own cal_r1_reg
        cfgs.LOSS.apply_r1_reg, cfgs.LOSS.r1_lambda = True, 0.1
    if name != "SNGAN-CNN":  # a narrower G keeps CPU time down; D is exactly the config's
        cfgs.MODEL.g_conv_dim = 16
    Gen, Dis = build(cfgs, model)
    san = cfgs.OPTIMIZATION.d_san
    assert cfgs.MODEL.apply_d_sn is False and not [m for m in Dis.modules() if "BatchNorm" in type(m).__name__]
    assert {m.padding_mode for m in Dis.modules() if isinstance(m, nn.Conv2d)} == {"circular"}
    supported = [n for n, m in Dis.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert list(san.layers) == supported and len(supported) == {"SNGAN-CNN": 8, "SNGAN": 11, "BigGAN": 16}[name]
    sn_dis = sn_discriminator(config.Configurations(str(CONFIGS / f"{name}-SN.yaml")))
    sn_shapes = {k.replace("weight_orig", "weight"): v.shape for k, v in sn_dis.named_parameters()}
    assert {k: v.shape for k, v in Dis.named_parameters()} == sn_shapes  # apply_d_sn's architecture
    for step in (1, 2):
        real_step(cfgs, Gen, Dis, d_step_=True)
        assert san.calls == step and all(abs(c - 1) < 1e-4 for c in constants(san).values())
    before = {k: v.clone() for k, v in Dis.state_dict().items()}
    real_step(cfgs, Gen, Dis, d_step_=False)
    assert san.calls == 2 and all(torch.equal(before[k], v) for k, v in Dis.state_dict().items())


def test_real_reparametrized_sync_free_d_steps(studiogan, tmp_path):
    config, model = studiogan
    torch.manual_seed(0)
    sections = yaml.safe_load((CONFIGS / "SNGAN-CNN-SAN.yaml").read_text())
    sections["MODEL"].update(d_san_form="reparametrize", d_san_sync_free=True)
    cfgs = config.Configurations(write_cfg(tmp_path, sections))
    Gen, Dis = build(cfgs, model)
    san = cfgs.OPTIMIZATION.d_san
    assert san.config["form"] == "reparametrize" and san.config["sync_free"] is True
    for step in (1, 2):
        real_step(cfgs, Gen, Dis, d_step_=True)
        assert san.calls == step and san.sync_free_active()
        for name, layer in san.layers.items():  # W / s at 1 by a float64 FFT / SVD
            assert one_sparse_gain(layer, san.input_sizes.get(name)) == pytest.approx(1.0, rel=1e-5), name
    san.check()


@pytest.mark.parametrize(
    ("base", "extra", "message"),
    [
        ("SNGAN.yaml", {"apply_d_san": True}, "apply_d_sn: True normalize the same discriminator twice"),
        ("WGAN-WC.yaml", {"apply_d_san": True}, "expected LOSS.apply_wc: False"),
        ("StyleGAN2.yaml", {"apply_d_san": True}, "not supported with MODEL.backbone 'stylegan2'"),
        ("DCGAN.yaml", {"apply_d_san": True, "d_san_ratio": 0.5}, "unknown SAN option MODEL.d_san_ratio"),
        ("DCGAN.yaml", {"apply_d_san": True, "d_san_form": "w/s"}, "MODEL.d_san_form: expected one of"),
    ],
)
def test_real_bad_input_fails_in_configurations(studiogan, tmp_path, base, extra, message):
    config, _ = studiogan
    sections = yaml.safe_load((Path(ROOT) / "src" / "configs" / "CIFAR10" / base).read_text())
    sections.setdefault("MODEL", {}).update(extra)
    with pytest.raises(SANConfigError) as err:
        config.Configurations(write_cfg(tmp_path, sections))
    assert message in str(err.value)


@pytest.mark.slow
def test_real_ddp_spawned_workers_agree(studiogan, tmp_path):
    config, _ = studiogan
    cfgs = config.Configurations(str(CONFIGS / "SNGAN-SAN.yaml"))
    cfgs.MODEL.d_san_filter_ratio = 0.5
    cfgs.define_modules()  # re-read the changed option
    cfgs.update_cfgs({"seed": 5}, super="RUN")
    payload = pickle.dumps(cfgs)
    mp.spawn(real_ddp_worker, args=(payload, ROOT, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"real{r}.pt") for r in (0, 1))
    assert r0["calls"] == r1["calls"] == 2
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])


@pytest.mark.gpu
@pytest.mark.parametrize("amp", [[], ["-mpc"]], ids=["fp32", "amp"])
def test_gpu_full_main_py_run(studiogan, tmp_path, amp):
    """20 steps of StudioGAN's own src/main.py through the launcher on CIFAR-10 JPEGs (ImageFolder), then
    SAN's constants of the saved D are 1. ``-metrics none`` leaves no "best" checkpoint, so main.py's final
    load_best_model fails after "End of training!"; that is StudioGAN's behaviour, not checked here."""
    import subprocess
    import tarfile

    archive = DATA / "cifar10" / "cifar10_jpeg.tar.gz"
    needs = {"wandb": "wandb", "h5py": "h5py", "sklearn": "scikit-learn", "pkg_resources": "'setuptools<81'"}
    missing = [pip for module, pip in needs.items() if importlib.util.find_spec(module) is None]
    if not archive.is_file() or missing:
        pytest.skip(f"needs {archive} and: pip install {' '.join(missing)}")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.split("/")[-3:-2] == ["train"]]
        keep = [m for m in members if int(Path(m.name).stem) < 32]
        tar.extractall(tmp_path / "extract", members=keep)
    train = next((tmp_path / "extract").rglob("train"))
    (tmp_path / "data").mkdir()
    train.rename(tmp_path / "data" / "train")
    sections = yaml.safe_load((CONFIGS / "SNGAN-SAN.yaml").read_text())
    sections["DATA"]["name"] = "CIFAR10_JPEG"  # not a torchvision name: StudioGAN reads DATA_DIR/train as ImageFolder
    sections["OPTIMIZATION"]["total_steps"] = 20
    cfg = write_cfg(tmp_path, sections, "SNGAN-SAN-smoke.yaml")
    command = [sys.executable, "-m", "san_studiogan", "--studiogan-root", ROOT, "--", "-t", "-metrics", "none"]
    command += ["-cfg", cfg, "-data", str(tmp_path / "data"), "-save", str(tmp_path / "save"), "--seed", "0"]
    command += ["--print_freq", "10", "--save_freq", "10", "--num_workers", "1", *amp]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}
    )
    assert "End of training!" in run.stdout + run.stderr, run.stderr[-3000:]
    ckpt = next((tmp_path / "save" / "checkpoints").rglob("model=D-current-weights-step=20.pth"))
    saved = torch.load(ckpt, map_location="cpu")
    state = saved["state_dict"]
    assert not [k for k in state if k.endswith("weight_orig")]
    config, model = studiogan
    cfgs = config.Configurations(cfg)
    _, Dis = build(cfgs, model)
    Dis.load_state_dict(state)
    assert all(abs(c - 1) < 1e-3 for c in constants(cfgs.OPTIMIZATION.d_san).values())
    san_state = saved[SAN_STATE_KEY]  # SAN's state travels in the D checkpoint StudioGAN's worker saved
    assert san_state["layers"] == list(cfgs.OPTIMIZATION.d_san.layers) and 1 <= san_state["calls"] <= 20


# ---------------------------------------------------------------------------------------------- checkpoints
def real_save(cfgs, Gen, Dis, step: int, ckpt_dir: Path) -> Path:
    """What worker.WORKER.save hands to StudioGAN's utils.misc.save_model (D's extra keys included)."""
    import utils.misc as misc

    o = cfgs.OPTIMIZATION
    g_states = {"state_dict": Gen.state_dict(), "optimizer": o.g_optimizer.state_dict()}
    d_states = {"state_dict": Dis.state_dict(), "optimizer": o.d_optimizer.state_dict(), "seed": cfgs.RUN.seed}
    d_states.update(run_name="real", step=step, epoch=0, topk="initialize", aa_p=0.0, best_step=0, best_fid=None)
    d_states.update(best_fid_ckpt=str(ckpt_dir), lecam_emas={"G_loss": 7777.0, "decay": 0.9, "start_itr": 0})
    misc.save_model(model="G", when="current", step=step, ckpt_dir=str(ckpt_dir), states=g_states)
    misc.save_model(model="D", when="current", step=step, ckpt_dir=str(ckpt_dir), states=d_states)
    return next(ckpt_dir.glob(f"model=D-current-weights-step={step}.pth"))


def real_train(cfgs, Gen, Dis, steps: int, start: int = 0) -> None:
    for step in range(start, start + steps):
        torch.manual_seed(100 + step)  # the data of a step depends on the step alone
        real_step(cfgs, Gen, Dis, d_step_=True)
        real_step(cfgs, Gen, Dis, d_step_=False)


def real_resume(studiogan, cfg: str, ckpt_dir: Path):
    """Fresh cfgs, G, D and optimizers, then StudioGAN's own load_StudioGAN_ckpts (as loader.py with -ckpt)."""
    import utils.ckpt as ckpt

    config, model = studiogan
    cfgs = config.Configurations(cfg)
    Gen, Dis = build(cfgs, model, seed=3)
    cfgs.update_cfgs({"freezeD": -1}, super="RUN")
    o = cfgs.OPTIMIZATION
    loaded = ckpt.load_StudioGAN_ckpts(
        ckpt_dir=str(ckpt_dir), load_best=False, Gen=Gen, Dis=Dis, g_optimizer=o.g_optimizer,
        d_optimizer=o.d_optimizer, run_name="real", apply_g_ema=False, Gen_ema=None, ema=None, is_train=True,
        RUN=cfgs.RUN, logger=None, global_rank=0, device="cpu", cfg_file=cfg,
    )  # fmt: skip
    assert loaded[:2] == ("real", 4)
    return cfgs, Gen, Dis


@pytest.fixture
def cpu_optimizer_state(monkeypatch):
    """load_ckpt moves the loaded optimizer state to CUDA; these tests keep G and D on the CPU."""
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)


def test_real_resume_is_bit_for_bit(studiogan, cpu_optimizer_state, tmp_path):
    """StudioGAN's save_model / load_StudioGAN_ckpts: 4 steps + save + resume + 4 steps == 8 steps (r = 0.5, N = 3)."""
    import utils.ckpt as ckpt

    config, model = studiogan
    sections = yaml.safe_load((CONFIGS / "SNGAN-CNN-SAN.yaml").read_text())
    sections["MODEL"].update(d_san_filter_ratio=0.5, d_san_interval=3)
    cfg = write_cfg(tmp_path, sections, "SNGAN-CNN-SAN-subsets.yaml")
    cfgs = config.Configurations(cfg)
    torch.manual_seed(0)
    Gen, Dis = build(cfgs, model, seed=3)
    real_train(cfgs, Gen, Dis, 8)
    reference, reference_san = Dis.state_dict(), cfgs.OPTIMIZATION.d_san.state_dict()
    cfgs = config.Configurations(cfg)
    torch.manual_seed(0)
    Gen, Dis = build(cfgs, model, seed=3)
    real_train(cfgs, Gen, Dis, 4)
    path = real_save(cfgs, Gen, Dis, 4, tmp_path)
    assert torch.load(path)[SAN_STATE_KEY]["calls"] == 4
    _, fresh = build(config.Configurations(cfg), model, seed=3)
    original = ckpt.load_ckpt.__san_studiogan_original__  # StudioGAN's own loader ignores the extra key
    assert original(fresh, None, str(path), load_model=True, load_misc=True)[:3] == (3, "real", 4)
    cfgs, Gen, Dis = real_resume(studiogan, cfg, tmp_path)
    assert cfgs.OPTIMIZATION.d_san.calls == 4
    real_train(cfgs, Gen, Dis, 4, start=4)
    assert all(torch.equal(reference[k], v) for k, v in Dis.state_dict().items())
    assert torch.equal(cfgs.OPTIMIZATION.d_san.generator.get_state(), reference_san["generator"])


def test_real_sn_checkpoint_loads_into_a_san_d(studiogan, cpu_optimizer_state, tmp_path):
    config, model = studiogan
    sn = config.Configurations(str(CONFIGS / "SNGAN-CNN-SN.yaml"))
    Gen, sn_dis = build(sn, model, seed=3)
    real_train(sn, Gen, sn_dis, 1)
    real_save(sn, Gen, sn_dis, 4, tmp_path)
    sn_weights = sn_dis.state_dict()
    moments = {n: sn.OPTIMIZATION.d_optimizer.state[p]["exp_avg"] for n, p in sn_dis.named_parameters()}
    with pytest.warns(SANCheckpointWarning, match=r"has no SAN state .*weight_orig\) were converted"):
        cfgs, Gen, Dis = real_resume(studiogan, str(CONFIGS / "SNGAN-CNN-SAN.yaml"), tmp_path)
    for name, param in Dis.named_parameters():
        sn_name = f"{name}_orig" if f"{name}_orig" in sn_weights else name
        assert torch.equal(param, sn_weights[sn_name])
        assert torch.equal(cfgs.OPTIMIZATION.d_optimizer.state[param]["exp_avg"], moments[sn_name])
    real_train(cfgs, Gen, Dis, 1, start=4)
    san = cfgs.OPTIMIZATION.d_san
    assert san.calls == 1 and all(abs(c - 1) < 1e-4 for c in constants(san).values())
