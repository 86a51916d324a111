"""SANHook's config schema, submodule lookup, class-style SN stripping, checkpoint key mapping (real mmagic layers)."""

from __future__ import annotations

import importlib.util
import os
import socket
from types import SimpleNamespace

import pytest
import torch
from torch import nn

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
)

if not MISSING:
    import san_mmagic
    from mmagic.registry import HOOKS as MMAGIC_HOOKS
    from mmagic.registry import MODELS
    from mmagic.utils import register_all_modules
    from standins import mmagic_fixtures as fx

    from san_core import SAN

    register_all_modules()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(interval=0), "SANHook: expected interval"),
        (dict(filter_ratio=1.5), "SANHook: expected filter_ratio"),
        (dict(gain=-1.0), "SANHook: expected gain"),
        (dict(stride_mode="fast"), "SANHook: expected stride_mode"),
        (dict(seed="0"), "SANHook: expected seed"),
        (dict(targets=[]), "SANHook: expected targets"),
        (dict(include=[1]), "SANHook: expected include"),
        (dict(targets="a*", include="b*"), "give targets or include"),
        (dict(exclude=""), "SANHook: expected exclude"),
        (dict(circular_padding="yes"), "SANHook: expected circular_padding"),
        (dict(strip_spectral_norm=1), "SANHook: expected strip_spectral_norm"),
        (dict(module=""), "SANHook: expected module"),
        (dict(module="a..b"), "SANHook: expected module"),
        (dict(optim_wrapper=""), "SANHook: expected optim_wrapper"),
        (dict(log_interval=-1), "SANHook: expected log_interval"),
        (dict(layer_gains=[("conv", 2.0)]), "SANHook: expected layer_gains to be a dict"),
        (dict(layer_gains={"blocks.0.conv": 0.0}), r"SANHook: .*finite number > 0, got \{'blocks.0.conv': 0.0\}"),
        (dict(layer_gains={"conv": "2"}), r"SANHook: .*finite number > 0, got \{'conv': '2'\}"),
        (dict(resume_tolerance=0), "SANHook: expected resume_tolerance to be None or a number > 0, got 0"),
        (dict(resume_tolerance="0.1"), "SANHook: expected resume_tolerance"),
    ],
)
def test_bad_values_fail_in_init_naming_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        san_mmagic.SANHook(**kwargs)


def test_unknown_key_fails() -> None:
    with pytest.raises(TypeError, match="interval_steps"):
        MMAGIC_HOOKS.build(dict(type="SANHook", interval_steps=2))


def test_mmagic_child_registry_builds_the_hook() -> None:
    hook = MMAGIC_HOOKS.build(dict(type="SANHook", include="conv_blocks.*", interval=2, filter_ratio=0.5, gain=1.2))
    assert isinstance(hook, san_mmagic.SANHook)
    assert hook.targets == ["conv_blocks.*"] and hook.optim_wrapper == "discriminator"
    assert hook.san_kwargs == dict(
        interval=2, filter_ratio=0.5, gain=1.2, stride_mode="paper", seed=0, form="rescale", sync_free=None,
        compile_step=False, cuda_graph=False,
    )  # fmt: skip
    assert hook.priority == "ABOVE_NORMAL"


def test_missing_submodule_fails_listing_top_level_children() -> None:
    model = MODELS.build(
        dict(
            type="SNGAN",
            generator=dict(type="SNGANStandardCNNGenerator", base_channels=4),
            discriminator=dict(type="SNGANStandardCNNDiscriminator", base_channels=4),
        )
    )
    hook = san_mmagic.SANHook(module="critic")
    runner = SimpleNamespace(model=model)
    with pytest.raises(
        ValueError, match=r"no submodule 'critic'.*\['data_preprocessor', 'generator', 'discriminator'\]"
    ):
        hook.before_train(runner)
    assert hook.san is None


def _biggan_d(sn_style: str) -> nn.Module:
    return MODELS.build(
        dict(type="BigGANDiscriminator", input_scale=32, num_classes=10, base_channels=8, sn_style=sn_style)
    )


def test_class_style_spectral_norm_strip_and_exact_restore() -> None:
    from mmagic.models.editors.biggan.biggan_snmodule import SNConv2d, SNEmbedding, SNLinear

    torch.manual_seed(0)
    disc = _biggan_d("ajbrock").eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    expected = disc(x, y)
    names = [n for n, m in disc.named_modules() if isinstance(m, (SNConv2d, SNLinear, SNEmbedding))]
    layers = {n: m for n, m in disc.named_modules() if n in names}
    weights = {n: id(m.weight) for n, m in layers.items()}
    buffers = {n: id(m.u0) for n, m in layers.items()}
    record = san_mmagic.strip_class_spectral_norm_(disc, [*names, "conv_blocks.0"])
    assert record.names == names
    assert {type(m) for m in layers.values()} == {nn.Conv2d, nn.Linear, nn.Embedding}
    assert all("u0" not in m._buffers and "sv0" not in m._buffers for m in layers.values())
    assert {n: id(m.weight) for n, m in layers.items()} == weights  # same Parameters: optimizers keep working
    conv = layers["conv_blocks.0.conv1.conv"]
    torch.testing.assert_close(conv(x), nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))  # no SN divide
    assert record.restore() == names
    assert all(isinstance(layers[n], (SNConv2d, SNLinear, SNEmbedding)) for n in names)
    assert {n: id(m.u0) for n, m in layers.items()} == buffers
    torch.testing.assert_close(disc(x, y), expected)


def test_strip_rejects_unknown_names_before_changing_anything() -> None:
    disc = _biggan_d("ajbrock")
    before = [type(m) for m in disc.modules()]
    with pytest.raises(ValueError, match="no layers named \\['nope'\\]"):
        san_mmagic.strip_class_spectral_norm_(disc, ["conv_blocks.0.conv1.conv", "nope"])
    assert [type(m) for m in disc.modules()] == before


@pytest.mark.parametrize("sn_style", ["ajbrock", "torch"])
def test_before_run_strips_sn_sets_circular_and_builds_san(sn_style: str) -> None:
    model = MODELS.build(
        dict(
            type="BigGAN",
            num_classes=10,
            generator=dict(type="BigGANGenerator", output_scale=32, num_classes=10, base_channels=8, sn_style=sn_style),
            discriminator=dict(
                type="BigGANDiscriminator", input_scale=32, num_classes=10, base_channels=8, sn_style=sn_style
            ),
        )
    )
    hook = san_mmagic.SANHook(targets="conv_blocks.*")
    hook.before_run(SimpleNamespace(model=model))
    assert isinstance(hook.san, SAN) and all(n.startswith("conv_blocks.") for n in hook.san.layers)
    disc = model.discriminator
    convs = [m for n, m in disc.named_modules() if n in hook.san.layers]
    assert all(type(m) is nn.Conv2d and m.padding_mode == "circular" for m in convs)
    assert all(isinstance(m.weight, nn.Parameter) and not hasattr(m, "weight_orig") for m in convs)
    assert type(disc.decision).__name__ in ("SNLinear", "Linear")  # outside the targets: untouched
    if sn_style == "torch":
        assert hasattr(disc.decision, "weight_orig")
    hook.before_run(SimpleNamespace(model=model))  # a second before_run (train then test) is a no-op


def test_layer_gains_reach_san_and_unknown_names_leave_the_model_untouched() -> None:
    d = _biggan_d("ajbrock")
    model = SimpleNamespace(model=nn.ModuleDict({"discriminator": d}))
    hook = san_mmagic.SANHook(targets="conv_blocks.*", layer_gains={"conv_blocks.1.conv1.conv": 1.5})
    hook.before_run(model)
    assert hook.san is not None and hook.san.config["layer_gains"] == {"conv_blocks.1.conv1.conv": 1.5}
    assert hook.san.state_dict()["config"]["layer_gains"] == {"conv_blocks.1.conv1.conv": 1.5}
    d2 = _biggan_d("ajbrock")
    before = [(n, type(m), getattr(m, "padding_mode", None)) for n, m in d2.named_modules()]
    bad = san_mmagic.SANHook(targets="conv_blocks.*", layer_gains={"decision": 2.0})
    with pytest.raises(ValueError, match=r"layer_gains names layers that are not selected: \['decision'\]"):
        bad.before_run(SimpleNamespace(model=nn.ModuleDict({"discriminator": d2})))
    assert [(n, type(m), getattr(m, "padding_mode", None)) for n, m in d2.named_modules()] == before


def test_class_style_layers_need_strip_spectral_norm() -> None:
    model = SimpleNamespace(model=nn.ModuleDict({"discriminator": _biggan_d("ajbrock")}))
    with pytest.raises(ValueError, match="class-style spectral norm"):
        san_mmagic.SANHook(strip_spectral_norm=False).before_run(model)


def test_checkpoint_without_san_state_maps_sn_keys_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    disc = _biggan_d("torch")
    sn_state = {f"discriminator.{k}": v.clone() for k, v in disc.state_dict().items()}
    model = nn.ModuleDict({"discriminator": disc})
    hook = san_mmagic.SANHook()
    hook.before_run(SimpleNamespace(model=model))
    checkpoint = {"state_dict": dict(sn_state)}
    hook.after_load_checkpoint(SimpleNamespace(model=model), checkpoint)
    mapped = checkpoint["state_dict"]
    assert set(mapped) == {f"discriminator.{k}" for k in model.discriminator.state_dict()}
    key = "discriminator.conv_blocks.0.conv1.conv.weight"
    assert torch.equal(mapped[key], sn_state["discriminator.conv_blocks.0.conv1.conv.weight_orig"])
    model.load_state_dict(mapped)  # strict: every key matches the SAN form
    disc(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))  # no SAN state: each layer normalizes at first use
    assert all(abs(c - 1) < 1e-4 for c in fx.current_constants(hook).values())


@pytest.mark.parametrize("sn_style", ["torch", "ajbrock"])
def test_sn_checkpoint_maps_into_the_reparametrized_form(sn_style: str) -> None:
    from standins.fft_reference import one_sparse_gain

    torch.manual_seed(0)
    sn_state = {f"discriminator.{k}": v.clone() for k, v in _biggan_d(sn_style).state_dict().items()}
    disc = _biggan_d(sn_style)
    model = nn.ModuleDict({"discriminator": disc})
    hook = san_mmagic.SANHook(form="reparametrize", sync_free=False)
    hook.before_run(SimpleNamespace(model=model))
    san = hook.san
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    disc(x, y)  # each layer normalizes at first use: s = the constant of the critic's own initial W (not 1)
    own_s = {n: m.s.clone() for n, m in san.scales.items()}
    assert all(abs(float(s) - 1) > 1e-3 for s in own_s.values())
    checkpoint = {"state_dict": dict(sn_state)}
    hook.after_load_checkpoint(SimpleNamespace(model=model), checkpoint)
    model.load_state_dict(checkpoint["state_dict"])  # strict: every key matches the reparametrized critic
    raw_key = "weight_orig" if sn_style == "torch" else "weight"  # class-style SN keeps W as `weight` (+ u0/sv0)
    for name, layer in san.layers.items():
        sn_weight = sn_state[f"discriminator.{name}.{raw_key}"]
        assert torch.equal(layer.parametrizations.weight.original, sn_weight), name  # SN's W is the raw W of W / s
        assert torch.equal(layer.parametrizations.weight[0].s, own_s[name]), name  # s kept until SAN normalizes
    san.normalize_(force=True)
    for name, layer in san.layers.items():  # W / s at 1 by an independent float64 reference
        assert one_sparse_gain(layer, san.input_sizes.get(name)) == pytest.approx(1.0, rel=1e-5), name


def test_find_submodule_unwraps_mmengine_ddp_wrappers() -> None:
    import torch.distributed as dist
    from mmengine.model import MMSeparateDistributedDataParallel

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    except RuntimeError as err:  # e.g. no loopback networking in the sandbox
        pytest.skip(f"cannot start a one-process gloo group: {err}")
    try:
        model = MODELS.build(
            dict(
                type="SNGAN",
                generator=dict(type="SNGANStandardCNNGenerator", base_channels=4),
                discriminator=dict(type="SNGANStandardCNNDiscriminator", base_channels=4),
            )
        )
        wrapped = MMSeparateDistributedDataParallel(model, broadcast_buffers=False)
        assert type(wrapped.module.discriminator).__name__ == "MMDistributedDataParallel"
        assert san_mmagic.find_submodule(wrapped, "discriminator") is model.discriminator.module
    finally:
        dist.destroy_process_group()


def test_resume_check_by_saved_norms_and_by_constants() -> None:
    from san_mmagic.resume_check import mismatched, renormalize_if_needed, weight_norms

    from san_core import apply_san

    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 1))
    san = apply_san(critic, example_input=torch.zeros(1, 3, 8, 8))
    san.normalize_(force=True)
    saved, state = weight_norms(san), san.generator.get_state()
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    assert mismatched(san, saved) == {} and renormalize_if_needed(san, saved, 0.1) == {}
    assert renormalize_if_needed(san, None, 0.1) == {}  # constants at 1: nothing to do, nothing changed
    assert all(torch.equal(v, critic.state_dict()[k]) for k, v in before.items())
    assert torch.equal(san.generator.get_state(), state)
    with torch.no_grad():
        critic[0].weight.mul_(3.0)  # "did not load": the state no longer describes this weight
    assert mismatched(san, saved) == {"0": pytest.approx(3.0)}
    assert set(renormalize_if_needed(san, None, 0.1)) == {"0"}  # by constants (filter_ratio 1): 3.0 > 1 + 0.1
    assert abs(float(san.constants()["0"]) - 1) < 1e-5 and san.calls == 0  # normalized, not counted
    subset = apply_san(nn.Sequential(nn.Conv2d(3, 8, 3)), filter_ratio=0.5, example_input=torch.zeros(1, 3, 8, 8))
    assert renormalize_if_needed(subset, None, 0.1) == {}  # kernel subsets without saved norms: no reliable check
