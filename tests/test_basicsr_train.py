"""Real BasicSR/Real-ESRGAN training with SAN: ``python -m san_basicsr`` in-process on CPU, 2-4 iterations each.

Data: a tiny paired set cut from ``../shared/data/sr`` (SYNTHETIC images where that is missing; see
standins/basicsr_fixtures.py). Models: BasicSR's ``ESRGANModel`` and Real-ESRGAN's ``RealESRGANModel``
with tiny widths; the perceptual loss is OFF (no VGG19 weights here). Real-ESRGAN's model hard-codes
``.cuda()`` (DiffJPEG, USMSharp); on this CPU-only machine its test maps ``.cuda()`` to a no-op, and
uses ``high_order_degradation: false`` with paired data (the degradation pipeline is not SAN's concern).
"""

# ruff: noqa: E402  (the extra's imports follow the module-level skip)
from __future__ import annotations

import importlib.util
import inspect
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

MISSING = [m for m in ("basicsr", "realesrgan") if importlib.util.find_spec(m) is None]
REASON = f'needs the [basicsr] extra (pip install "sparsity-aware-norm[basicsr]"); missing {MISSING}'
if MISSING:  # module-level names below use the extra's classes, so skip before they are defined
    pytest.skip(REASON, allow_module_level=True)

import san_basicsr
from basicsr.archs.discriminator_arch import UNetDiscriminatorSN
from san_basicsr import patch
from san_basicsr.launcher import main
from standins import basicsr_fixtures as fx

from san_core import SAN

VGG_D = {"type": "VGGStyleDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8}
UNET_D = {"type": "UNetDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8, "skip_connection": True}
REAL_ESRGAN = {  # RealESRGANModel's own top-level options; paired data instead of its on-the-fly degradations
    "high_order_degradation": False,
    "l1_gt_usm": True,
    "percep_gt_usm": True,
    "gan_gt_usm": False,
    "gt_size": fx.GT_SIZE,
    "queue_size": 4,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sr_pairs")
    print(f"tiny SR pairs from: {fx.make_pairs(root)}")
    return root


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Runs each test in tmp_path; records every model SAN attaches to and, after each optimizer_d step (after SAN's
    own hook), every SAN layer's 1-sparse gain computed independently; collects BasicSR's log lines."""
    monkeypatch.chdir(tmp_path)
    seen: dict[str, Any] = {"models": [], "gains": [], "states_at_attach": [], "d_at_attach": [], "log": []}
    original = patch.attach_to_model

    def attach(model: Any) -> Any:
        binding = original(model)
        seen["models"].append(model)
        if binding is not None:
            seen["states_at_attach"].append(binding.san.state_dict())
            seen["d_at_attach"].append({k: v.clone() for k, v in binding.san.module.state_dict().items()})

            def check(*_: Any) -> None:
                san = binding.san
                if not all(bool(torch.isfinite(m.weight).all()) for m in san.layers.values()):
                    return  # a NaN put there by a test: no gains to compute
                seen["gains"].append({n: fx.one_sparse_gain(m, san.input_sizes.get(n)) for n, m in san.layers.items()})

            model.optimizer_d.register_step_post_hook(check)
        return binding

    monkeypatch.setattr(patch, "attach_to_model", attach)
    handler = logging.Handler()
    handler.emit = lambda record: seen["log"].append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("basicsr")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)
    san_basicsr.uninstall()


def _run(tmp: Path, opt: dict[str, Any], *flags: str, pipeline: str = "basicsr") -> None:
    path = fx.write_yaml(tmp / f"{opt['name']}.yml", opt)
    assert main(["-opt", str(path), *flags], pipeline=pipeline) == 0


def _assert_g_untouched(model: Any) -> None:
    san_layers = {id(m) for m in model.san_binding.san.layers.values()}
    for net in (model.net_g, getattr(model, "net_g_ema", None)):
        if net is None:
            continue
        assert not san_layers & {id(m) for m in net.modules()}
        assert all(m.padding_mode == "zeros" for m in net.modules() if isinstance(m, nn.Conv2d))
        assert not any(m._forward_pre_hooks for m in net.modules())
    assert not model.optimizer_g._optimizer_step_post_hooks


@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
def test_esrgan_model_san_once_per_d_step(data: Path, probe: dict[str, Any], tmp_path: Path, form: str) -> None:
    if form != "rescale" and "form" not in inspect.signature(SAN).parameters:
        pytest.skip("this san_core has no form= option")
    d = {**VGG_D, "san": {"form": form}} if form != "rescale" else VGG_D
    opt = fx.options(data, name="esrgan", model_type="ESRGANModel", network_d=d, total_iter=3, save_freq=2)
    _run(tmp_path, opt)
    (model,) = probe["models"]
    assert type(model).__name__ == "ESRGANModel"
    san = model.san_binding.san
    assert san.calls == 3 and len(probe["gains"]) == 3  # exactly one normalization per real D step
    for gains in probe["gains"]:  # after each D step every SAN layer's constant is 1 (independent FFT / SVD)
        assert set(gains) == set(san.layers)
        assert all(g == pytest.approx(1.0, rel=1e-5) for g in gains.values()), gains
    _assert_g_untouched(model)
    models = tmp_path / "experiments" / "esrgan" / "models"
    assert {p.name for p in models.glob("net_d_*")} == {
        "net_d_2.pth", "net_d_2_san.pth", "net_d_latest.pth", "net_d_latest_san.pth"
    }  # fmt: skip
    saved = torch.load(models / "net_d_latest_san.pth", weights_only=True)
    assert saved["arch"] == "VGGStyleDiscriminatorSAN" and saved["state"]["calls"] == 3
    # per-layer constants in BasicSR's log at print_freq (1): one line per iteration, every layer
    lines = [m for m in probe["log"] if "[esrga..]" in m]
    assert len(lines) == 3 and all(f"san/{n}: " in line for line in lines for n in san.layers)


@pytest.mark.parametrize("form", ["rescale", "reparametrize"])
def test_resume_equals_uninterrupted_for_san_state(data: Path, probe: dict[str, Any], tmp_path: Path, form: str):
    d = {**VGG_D, "san": {"filter_ratio": 0.5, "seed": 3, "form": form}}  # r < 1: the subset generator advances
    _run(tmp_path, fx.options(data, name="whole", model_type="ESRGANModel", network_d=d, total_iter=4, save_freq=2))
    part = fx.options(data, name="split", model_type="ESRGANModel", network_d=d, total_iter=2, save_freq=2)
    _run(tmp_path, part)
    _run(tmp_path, part, "--auto_resume", "--force_yml", "train:total_iter=4")
    assert [type(m).__name__ for m in probe["models"]] == ["ESRGANModel"] * 3
    resumed = probe["models"][2].san_binding
    assert resumed.status.startswith("resumed SAN state from") and resumed.status.endswith("net_d_2_san.pth (step 2)")
    at_save = torch.load(tmp_path / "experiments/split/models/net_d_2_san.pth", weights_only=True)["state"]
    _assert_same_state(probe["states_at_attach"][2], at_save)  # restored bit for bit
    whole = torch.load(tmp_path / "experiments/whole/models/net_d_4_san.pth", weights_only=True)["state"]
    split = torch.load(tmp_path / "experiments/split/models/net_d_4_san.pth", weights_only=True)["state"]
    assert whole["calls"] == 4
    if form == "reparametrize":  # s = c(W) follows the weights, which BasicSR's resume does not reproduce (no RNG
        assert whole.pop("scales").keys() == split.pop("scales").keys()  # state: other batches after iteration 2)
    _assert_same_state(whole, split)


def _assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_real_esrgan_model_from_an_sn_checkpoint(
    data: Path, probe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nn.Module, "cuda", lambda self, device=None: self)  # CPU-only machine: see module docstring
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    torch.manual_seed(0)
    official = UNetDiscriminatorSN(3, num_feat=8, skip_connection=True)
    official(torch.rand(1, 3, 32, 32))
    torch.save({"params": official.state_dict()}, tmp_path / "net_d_sn.pth")  # how BasicSR saves net_d
    opt = fx.options(data, name="realesrgan", model_type="RealESRGANModel", network_d=UNET_D, total_iter=3,
                     save_freq=2, extra=REAL_ESRGAN)  # fmt: skip
    opt["path"]["pretrain_network_d"] = str(tmp_path / "net_d_sn.pth")
    _run(tmp_path, opt, pipeline="realesrgan")
    (model,) = probe["models"]
    assert type(model).__name__ == "RealESRGANModel"
    san = model.san_binding.san
    assert model.san_binding.status.startswith("no SAN state beside")
    start = probe["states_at_attach"][0]
    assert start["calls"] == 0 and start["pending"] == [f"conv{i}" for i in range(1, 9)]
    assert any("converted the spectral-norm keys of 8 layers" in m for m in probe["log"])
    assert san.calls == 3 and len(probe["gains"]) == 3
    for gains in probe["gains"]:
        assert all(g == pytest.approx(1.0, rel=1e-5) for g in gains.values()), gains
    loaded = probe["d_at_attach"][0]  # the SN checkpoint's raw weights, before SAN's first normalization
    for i in range(1, 9):
        assert torch.equal(loaded[f"conv{i}.weight"], official.state_dict()[f"conv{i}.weight_orig"])
    assert torch.equal(loaded["conv0.weight"], official.conv0.weight)
    assert not model.net_d.conv0._forward_pre_hooks and model.net_d.conv0.padding_mode == "zeros"  # not a SAN layer
    _assert_g_untouched(model)


def test_models_without_net_d_are_left_alone(data: Path, probe: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(nn.Module, "cuda", lambda self, device=None: self)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    import realesrgan.models  # noqa: F401  (registers RealESRNetModel)
    from basicsr.models import build_model

    opt = fx.options(data, name="net", model_type="RealESRNetModel", network_d=UNET_D, extra=REAL_ESRGAN)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    model = build_model(opt)
    assert patch.attach_to_model(model) is None
    assert any("RealESRNetModel has no net_d; SAN is not used" in m for m in probe["log"])


def test_sync_options_reach_san_and_reparametrized_trains_exactly(data: Path, probe: dict[str, Any], tmp_path: Path):
    d = {**VGG_D, "san": {"form": "reparametrize", "sync_free": True, "compile_step": False, "cuda_graph": False}}
    _run(tmp_path, fx.options(data, name="syncfree", model_type="ESRGANModel", network_d=d, total_iter=3))
    san = probe["models"][0].san_binding.san
    assert san.config["form"] == "reparametrize" and san.config["sync_free"] is True and san.sync_free_active()
    assert san.config["compile_step"] is False and san.config["cuda_graph"] is False
    assert san.calls == 3 and len(probe["gains"]) == 3  # W / s of every SAN layer at 1 after each D step
    assert all(g == pytest.approx(1.0, rel=1e-5) for gains in probe["gains"] for g in gains.values()), probe["gains"]


def test_sync_free_nan_surfaces_at_the_next_print_freq(data: Path, probe: dict[str, Any], tmp_path: Path) -> None:
    original, steps = patch.attach_to_model, []

    def attach(model: Any) -> Any:  # one NaN into the first SAN layer's weight just before the 2nd D step
        binding = original(model)
        first = next(iter(binding.san.layers.values()))

        def inject(*_: Any) -> None:
            steps.append(1)
            if len(steps) == 2:
                with torch.no_grad():
                    first.weight.view(-1)[0] = float("nan")

        model.optimizer_d.register_step_pre_hook(inject)
        return binding

    patch.attach_to_model = attach  # the probe fixture's monkeypatch restores the original
    d = {**VGG_D, "san": {"sync_free": True}}
    opt = fx.options(data, name="nan", model_type="ESRGANModel", network_d=d, total_iter=6, print_freq=4)
    with pytest.raises(ValueError, match=r"^SAN: layers \['conv0_0', .*\] had NaN/Inf weights at a sync-free"):
        _run(tmp_path, opt)
    assert len(steps) == 4  # raised at iteration 4's log line, not at the NaN's step 2
