"""Training the shipped configs with a real MMEngine Runner and real mmagic models, on tiny data from ../shared/data.

Widths, data and iterations are shrunk (standins/mmagic_fixtures.py); architectures, losses, train
steps, optimizers and the SANHook settings are the configs' own. The SR runs switch the perceptual
loss off (it needs VGG19 weights; test_mmagic_configs.py covers it with a random VGG).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
)

if not MISSING:
    import san_mmagic  # noqa: F401  (compat step and registrations)
    from mmengine.runner import Runner
    from standins import mmagic_fixtures as fx

    fx.register_probe()
    DATA_OK = fx.CIFAR_NPZ.is_file() and fx.SR_TRAIN.is_dir()
    TRAIN_CONFIGS = [*fx.GAN_CONFIGS, fx.ESRGAN, fx.SR_ADV1]
else:
    DATA_OK, TRAIN_CONFIGS = False, []

needs_data = pytest.mark.skipif(
    not MISSING and not DATA_OK, reason="needs ../shared/data (cifar10 subset npz and sr/train images)"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mmagic-data")
    return {"gan": fx.cifar_png_folder(root / "cifar"), "sr": fx.sr_patch_folder(root / "sr")}


def make_cfg(config: Path, tmp: Path, data: dict[str, Path], name: str, iters: int) -> Any:
    kind = "sr" if config in fx.SR_CONFIGS else "gan"
    return fx.tiny_cfg(config, tmp / name, data[kind], iters=iters, name=f"{config.stem}-{name}", batch=2)


def _run(cfg: Any) -> Any:
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def check_san_invariants(runner: Any) -> tuple[Any, Any]:
    """Exact constants after the last D step, G untouched by SAN, one normalization per real D step."""
    san, probe = fx.hooks_of(runner)
    assert probe.g_violations == []
    assert san.san.calls == probe.d_steps > 0
    constants = fx.current_constants(san)
    assert constants and all(abs(c - 1.0) < 1e-4 for c in constants.values()), constants
    model = runner.model
    san_params = {id(layer.weight) for layer in san.san.layers.values()}
    assert san_params <= {id(p) for p in model.discriminator.parameters()}
    assert not san_params & {id(p) for p in model.generator.parameters()}
    assert all(m.padding_mode == "circular" for m in san.san.layers.values() if isinstance(m, nn.Conv2d))
    logged = {k[len("train/san/") :]: v.current() for k, v in runner.message_hub.log_scalars.items() if "/san/" in k}
    assert set(logged) == set(san.san.layers)
    for name, value in logged.items():
        assert value == pytest.approx(float(san.san.last_constants[name]), rel=1e-6)
    return san, probe


@needs_data
@pytest.mark.parametrize("config", TRAIN_CONFIGS, ids=lambda p: p.parent.name)
def test_config_trains_with_exact_san(config: Path, data: dict[str, Path], tmp_path: Path) -> None:
    runner = _run(make_cfg(config, tmp_path, data, "run", iters=3))
    san, probe = check_san_invariants(runner)
    assert probe.d_steps == 3  # one D step per iteration in every shipped SAN config
    if config == fx.BIGGAN:  # SAN in the res-blocks only: the head keeps torch's spectral norm
        assert all(name.startswith("conv_blocks.") for name in san.san.layers)
        assert hasattr(runner.model.discriminator.decision, "weight_orig")


@needs_data
def test_discriminator_steps_and_gradient_accumulation(data: dict[str, Path], tmp_path: Path) -> None:
    cfg = make_cfg(fx.SNGAN_CNN, tmp_path, data, "accum", iters=8)
    cfg.model.discriminator_steps = 2
    cfg.optim_wrapper.discriminator.accumulative_counts = 2
    runner = _run(cfg)
    san, probe = check_san_invariants(runner)
    assert probe.d_steps == 8 // 2  # accumulation: one real D step per 2 iterations
    assert san.san.calls == 4


@needs_data
def test_interval_normalizes_every_nth_step(data: dict[str, Path], tmp_path: Path) -> None:
    cfg = make_cfg(fx.SNGAN_CNN, tmp_path, data, "interval", iters=4)
    cfg.custom_hooks = [h if h["type"] != "SANHook" else {**h, "interval": 2} for h in cfg.custom_hooks]
    san, probe = fx.hooks_of(_run(cfg))
    assert san.san.calls == probe.d_steps == 4
    assert all(abs(c - 1.0) < 1e-4 for c in fx.current_constants(san).values())  # step 4 normalized


@needs_data
@pytest.mark.parametrize("config", [fx.SNGAN_CNN, fx.SR_ADV1] if not MISSING else [], ids=lambda p: p.parent.name)
def test_save_resume_continue_equals_uninterrupted(config: Path, data: dict[str, Path], tmp_path: Path) -> None:
    def cfg_for(name: str) -> Any:
        cfg = make_cfg(config, tmp_path, data, name, iters=4)
        cfg.default_hooks.checkpoint.interval = 2
        cfg.custom_hooks = [h if h["type"] != "SANHook" else {**h, "filter_ratio": 0.5} for h in cfg.custom_hooks]
        return cfg

    full = _run(cfg_for("full"))
    first = cfg_for("first")
    first.train_cfg.max_iters = 2
    _run(first)
    checkpoint = tmp_path / "first" / "iter_2.pth"
    saved = torch.load(checkpoint, weights_only=True)  # torch's default since 2.6; works after the compat step
    assert saved["san"]["module"] == "discriminator" and saved["san"]["state"]["calls"] == 2
    resumed_cfg = cfg_for("resumed")
    resumed_cfg.resume, resumed_cfg.load_from = True, str(checkpoint)
    resumed = _run(resumed_cfg)
    full_san, resumed_san = fx.hooks_of(full)[0].san, fx.hooks_of(resumed)[0].san
    assert resumed.iter == full.iter == 4 and resumed_san.calls == full_san.calls == 4
    assert fx.hooks_of(resumed)[0].renormalized_after_load == {}  # weights matched the restored state: untouched
    assert torch.equal(resumed_san.generator.get_state(), full_san.generator.get_state())
    expected, got = fx.model_state(full), fx.model_state(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


@needs_data
def test_resuming_a_ddp_checkpoint_in_one_process_renormalizes(data: dict[str, Path], tmp_path: Path) -> None:
    """A DDP run's checkpoint ('discriminator.module.*' keys) resumed in one process: the weights do not load,
    so the restored SAN state does not describe them; the hook normalizes them (with a warning) before training."""
    first = make_cfg(fx.SNGAN_CNN, tmp_path, data, "ddp", iters=2)
    first.default_hooks.checkpoint.interval = 2
    _run(first)
    saved = torch.load(tmp_path / "ddp" / "iter_2.pth", weights_only=True)
    saved["state_dict"] = {  # MMSeparateDistributedDataParallel's layout
        k.replace("generator.", "generator.module.", 1).replace("discriminator.", "discriminator.module.", 1): v
        for k, v in saved["state_dict"].items()
    }
    ddp_checkpoint = tmp_path / "ddp_iter_2.pth"
    torch.save(saved, ddp_checkpoint)
    cfg = make_cfg(fx.SNGAN_CNN, tmp_path, data, "resumed", iters=3)
    cfg.resume, cfg.load_from = True, str(ddp_checkpoint)
    runner = Runner.from_cfg(cfg)
    fresh = {k: v.clone() for k, v in runner.model.discriminator.state_dict().items()}
    runner.train()
    san = fx.hooks_of(runner)[0]
    assert san.san.calls == 3  # the state was restored, the weights were not: every layer is found off
    assert set(san.renormalized_after_load) == set(san.san.layers)
    first_logged = {n: float(c) for n, c in san.san.last_constants.items()}  # the one D step after the resume
    assert all(abs(c - 1) < 0.05 for c in first_logged.values()), first_logged  # 0.2-1.1 without the check
    assert not torch.equal(fresh["convs.0.weight"], runner.model.discriminator.convs[0].weight)
    log = next((tmp_path / "resumed").rglob("*.log")).read_text()
    assert "SAN layers do not match the restored SAN state" in log


@needs_data
def test_load_from_sn_baseline_without_san_state(data: dict[str, Path], tmp_path: Path) -> None:
    baseline = _run(make_cfg(fx.SNGAN_CNN_SN, tmp_path, data, "sn", iters=1))
    path = tmp_path / "sn.pth"
    baseline.save_checkpoint(str(tmp_path), "sn.pth")
    sn_weight = baseline.model.discriminator.convs[0].weight_orig.detach().clone()
    cfg = make_cfg(fx.SNGAN_CNN, tmp_path, data, "from-sn", iters=1)
    cfg.load_from = str(path)
    runner = Runner.from_cfg(cfg)
    loaded = {}
    conv = runner.model.discriminator.convs[0]

    def record(module: nn.Module, args: tuple) -> None:
        loaded.setdefault("w", module.weight.detach().clone())

    handle = conv.register_forward_pre_hook(record)
    runner.train()
    handle.remove()
    check_san_invariants(runner)
    assert torch.equal(loaded["w"], sn_weight)  # SN's weight_orig, loaded into the plain conv (our pre-hook runs first)


@needs_data
def test_sr_generator_starts_from_the_psnr_checkpoint(data: dict[str, Path], tmp_path: Path) -> None:
    from mmagic.registry import MODELS

    torch.manual_seed(5)
    psnr = MODELS.build(dict(type="MSRResNet", in_channels=3, out_channels=3, mid_channels=8, num_blocks=1))
    path = tmp_path / "psnr.pth"  # laid out like mmagic's checkpoints of BaseEditModel: 'generator.*' keys
    torch.save({"meta": {}, "state_dict": {f"generator.{k}": v for k, v in psnr.state_dict().items()}}, path)
    cfg = make_cfg(fx.SR_ADV1, tmp_path, data, "psnr-init", iters=1)
    cfg.model.init_cfg = dict(type="Pretrained", checkpoint=str(path))
    _, probe = check_san_invariants(_run(cfg))
    expected = dict(psnr.named_parameters())
    assert probe.g_start.keys() == expected.keys()
    for name, value in probe.g_start.items():
        assert torch.equal(value, expected[name]), name


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("config", [fx.ESRGAN, fx.SR_ADV2] if not MISSING else [], ids=lambda p: p.stem)
def test_sr_config_trains_with_random_vgg_perceptual_loss(config: Path, data: dict[str, Path], tmp_path: Path) -> None:
    """The full SR loss, with a randomly initialised VGG19 (no weights here; the loss values mean nothing)."""
    cfg = make_cfg(config, tmp_path, data, "vgg", iters=2)
    cfg.model.perceptual_loss = dict(
        type="LocalVGGPerceptualLoss", layer_weights={"34": 1.0}, vgg_type="vgg19", random_init=True, norm_img=False
    )
    runner = _run(cfg)
    _, probe = check_san_invariants(runner)
    assert probe.d_steps == 2
    assert "train/loss_perceptual" in runner.message_hub.log_scalars
