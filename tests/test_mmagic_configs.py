"""Every shipped MMagic config loads, builds (model, datasets, hooks) and holds the paper's settings.

The configs read VGG19 weights from a local file: these tests write a randomly initialised VGG19
feature extractor (torchvision's key layout) to a temporary file and point ``SAN_VGG19_PATH`` at it,
so the loss really loads from disk but its values are meaningless. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
)

if not MISSING:
    import san_mmagic
    from mmagic.registry import DATASETS, HOOKS, MODELS, VISUALIZERS
    from mmagic.utils import register_all_modules
    from mmengine.config import Config
    from san_mmagic.perceptual import vgg_features
    from standins import mmagic_fixtures as fx

    register_all_modules()
    ALL_CONFIGS = sorted(fx.CONFIGS.rglob("*.py"))
else:
    ALL_CONFIGS = []


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in vgg_features("vgg19", 35).state_dict().items()}, path)
    return path


@pytest.fixture
def load(vgg19_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAN_VGG19_PATH", str(vgg19_file))
    return lambda path: Config.fromfile(str(path))


def plain(node):
    """A config node as plain dicts/lists without the ``_scope_`` keys that ``mmagic::`` bases add."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items() if k != "_scope_"}
    return [plain(v) for v in node] if isinstance(node, list) else node


def test_every_config_is_found() -> None:
    assert len(ALL_CONFIGS) == 7, ALL_CONFIGS
    assert set(fx.GAN_CONFIGS + fx.SR_CONFIGS + (fx.SNGAN_CNN_SN,)) == set(ALL_CONFIGS)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: p.name)
def test_config_builds_model_datasets_and_hooks(config: Path, load) -> None:
    cfg = load(config)
    assert cfg.custom_imports == dict(imports=["san_mmagic"], allow_failed_imports=False)
    model = MODELS.build(cfg.model)
    assert isinstance(model.discriminator, nn.Module)
    for phase in ("train", "val", "test"):
        loaders = cfg.get(f"{phase}_dataloader") or []
        for loader in loaders if isinstance(loaders, list) else [loaders]:  # MultiTestLoop: a list
            dataset = DATASETS.build({**loader["dataset"], "lazy_init": True})
            assert type(dataset).__name__ == loader["dataset"]["type"]
    VISUALIZERS.build({**cfg.visualizer, "name": "san-config-test"})  # the visualization hooks look it up
    hooks = [HOOKS.build(h) for h in cfg.custom_hooks]
    san = [h for h in hooks if isinstance(h, san_mmagic.SANHook)]
    assert len(san) == (0 if config == fx.SNGAN_CNN_SN else 1)
    if san:
        assert san[0].module == "discriminator" and san[0].circular_padding and san[0].strip_spectral_norm


@pytest.mark.parametrize("config", [fx.SNGAN_CNN, fx.SNGAN_RESNET] if not MISSING else [], ids=lambda p: p.name)
def test_sngan_configs_follow_the_paper(config: Path, load) -> None:
    cfg = load(config)
    assert cfg.model.type == "SNGAN" and cfg.model.discriminator_steps == 1  # SNGAN's loss is the hinge loss
    assert cfg.model.discriminator.with_spectral_norm is False
    for part in ("generator", "discriminator"):
        assert plain(cfg.optim_wrapper[part].optimizer) == dict(type="Adam", lr=2e-4, betas=(0.5, 0.9))
    assert cfg.train_dataloader.batch_size == 64 and cfg.train_cfg.max_iters == 200 * 50000 // 64


def test_standard_cnn_matches_miyato_table_3(load) -> None:
    model = MODELS.build(load(fx.SNGAN_CNN).model)
    convs = [m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (64, (3, 3), (1, 1)), (64, (4, 4), (2, 2)), (128, (3, 3), (1, 1)), (128, (4, 4), (2, 2)),
        (256, (3, 3), (1, 1)), (256, (4, 4), (2, 2)), (512, (3, 3), (1, 1)),
    ]  # fmt: skip
    assert model.discriminator(torch.randn(2, 3, 32, 32)).shape == (2, 1)
    assert model.generator(None, num_batches=2).shape == (2, 3, 32, 32)
    baseline = MODELS.build(load(fx.SNGAN_CNN_SN).model)
    assert all(
        hasattr(m, "weight_orig") for m in baseline.discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )


def test_biggan_config(load) -> None:
    cfg = load(fx.BIGGAN)
    assert next(h for h in cfg.custom_hooks if h.type == "SANHook").targets == ["conv_blocks.*"]
    for part in ("generator", "discriminator"):
        assert cfg.optim_wrapper[part].optimizer.betas == (0.5, 0.999)


def test_esrgan_override(load) -> None:
    cfg = load(fx.ESRGAN)
    import mmagic

    base = Config.fromfile(
        str(Path(mmagic.__file__).parent / ".mim/configs/esrgan/esrgan_x4c64b23g32_1xb16-400k_div2k.py")
    )
    assert plain(cfg.model.discriminator) == plain(base.model.discriminator)  # ModifiedVGG, unchanged
    assert cfg.optim_wrapper.discriminator.optimizer.betas == (0.5, 0.9)
    assert plain(cfg.optim_wrapper.generator) == plain(base.optim_wrapper.generator)
    assert plain(cfg.model.gan_loss) == plain(base.model.gan_loss)
    assert cfg.train_cfg.max_iters == base.train_cfg.max_iters
    assert not cfg.model.generator.init_cfg.checkpoint.startswith("http")
    assert cfg.model.perceptual_loss.type == "LocalVGGPerceptualLoss"


@pytest.mark.parametrize(("config", "lambda_adv"), [(fx.SR_ADV1, 1e-1), (fx.SR_ADV2, 1e-2)] if not MISSING else [])
def test_sr_recipe_follows_the_paper(config: Path, lambda_adv: float, load) -> None:
    cfg = load(config)
    assert plain(cfg.model.gan_loss) == dict(type="GANLoss", gan_type="hinge", loss_weight=lambda_adv)
    assert cfg.model.pixel_loss.loss_weight == 1e-2 and cfg.model.pixel_loss.type == "L1Loss"
    assert cfg.model.perceptual_loss.layer_weights == {"34": 1.0} and cfg.model.perceptual_loss.vgg_type == "vgg19"
    for part in ("generator", "discriminator"):
        assert plain(cfg.optim_wrapper[part].optimizer) == dict(type="Adam", lr=2e-4, betas=(0.5, 0.9))
    assert cfg.train_dataloader.batch_size == 32 and cfg.train_cfg.max_iters == 400_000
    assert cfg.param_scheduler.milestones == [50_000, 100_000, 200_000, 300_000] and cfg.param_scheduler.gamma == 0.5
    assert cfg.model.init_cfg.type == "Pretrained"
    model = MODELS.build(cfg.model)
    assert 1.4e6 < sum(p.numel() for p in model.generator.parameters()) < 1.6e6
    d = model.discriminator
    assert sum(isinstance(m, nn.Conv2d) for m in d.modules()) == 10
    assert sum(isinstance(m, nn.Linear) for m in d.modules()) == 2
    assert d(torch.randn(1, 3, 128, 128)).shape == (1, 1)


def test_missing_weights_fail_early_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAN_VGG19_PATH", str(tmp_path / "absent-vgg19.pth"))
    cfg = Config.fromfile(str(fx.SR_ADV1))
    with pytest.raises(san_mmagic.MissingWeightsError, match=r"^model.init_cfg.checkpoint: checkpoint not found"):
        san_mmagic.check_local_weights(cfg)
    weights = tmp_path / "weights.pth"
    torch.save({f"features.{k}": v for k, v in vgg_features("vgg19", 35).state_dict().items()}, weights)
    cfg.model.init_cfg.checkpoint = str(weights)
    with pytest.raises(san_mmagic.MissingWeightsError, match=r"^model.perceptual_loss.vgg_path: VGG19 weights not"):
        san_mmagic.check_local_weights(cfg)
    with pytest.raises(san_mmagic.MissingWeightsError, match=r"vgg_path=.*absent-vgg19\.pth"):
        MODELS.build(cfg.model.perceptual_loss)
    cfg.model.perceptual_loss.vgg_path = str(weights)
    san_mmagic.check_local_weights(cfg)
    cfg.load_from = str(tmp_path / "absent.pth")
    with pytest.raises(san_mmagic.MissingWeightsError, match=r"^load_from: checkpoint not found"):
        san_mmagic.check_local_weights(cfg)


def test_perceptual_loss_matches_torchvision_vgg19_layout(tmp_path: Path) -> None:
    from torchvision.models import vgg as tv_vgg

    torch.manual_seed(0)
    reference = tv_vgg.make_layers(tv_vgg.cfgs["E"])  # torchvision's own VGG19 `features`
    path = tmp_path / "vgg19.pth"
    torch.save({"state_dict": {f"vgg.features.{k}": v for k, v in reference.state_dict().items()}}, path)
    loss = san_mmagic.LocalVGGPerceptualLoss({"34": 1.0}, vgg_path=str(path))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = reference[:35]((x - loss.mean) / loss.std)
        torch.testing.assert_close(loss._features(x)["34"], expected)
    assert isinstance(loss.vgg[34], nn.Conv2d) and loss.vgg[34].out_channels == 512  # conv5_4, before its ReLU
    value, style = loss(x, torch.rand(1, 3, 32, 32))
    assert style is None and value.ndim == 0 and value > 0
    with pytest.raises(ValueError, match="lacks"):
        torch.save({"features.0.weight": reference[0].weight}, path)
        san_mmagic.LocalVGGPerceptualLoss({"34": 1.0}, vgg_path=str(path))
