"""san_basicsr's archs and options with the real BasicSR 1.4.2 / Real-ESRGAN 0.3.0 (the [basicsr] extra).

Archs are built from YAML through BasicSR's own ``build_network``; constants are checked against an
independent float64 FFT (tests/standins/fft_reference.py), SN checkpoints against the official
``UNetDiscriminatorSN``, bad options by their one-line messages.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml
from torch import nn

MISSING = [m for m in ("basicsr", "realesrgan") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [basicsr] extra (pip install "sparsity-aware-norm[basicsr]"); missing {MISSING}'
)

if not MISSING:
    import san_basicsr  # compat step + registrations
    from basicsr.archs import build_network
    from basicsr.archs.discriminator_arch import UNetDiscriminatorSN
    from basicsr.utils.registry import ARCH_REGISTRY
    from san_basicsr import SANOptionError, parse_san_block
    from standins import basicsr_fixtures as fx

UNET_YAML = """
network_d:
  type: UNetDiscriminatorSAN
  num_in_ch: 3
  num_feat: 8
  skip_connection: true
  san:
    filter_ratio: 0.5
    gain: 1.3
    interval: 2
    stride_mode: exact
    seed: 7
"""


def _convs(net: nn.Module) -> dict[str, nn.Conv2d]:
    return {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}


def test_compat_step_lets_basicsr_import_its_degradations() -> None:
    import torchvision.transforms._functional_tensor as renamed
    from basicsr.data import degradations

    assert degradations.rgb_to_grayscale is renamed.rgb_to_grayscale
    assert san_basicsr.compat.apply() == {"numpy_aliases": False, "torchvision": False, "functional_tensor": False}


def test_archs_are_registered_and_build_from_yaml() -> None:
    for name in ("UNetDiscriminatorSAN", "VGGStyleDiscriminatorSAN", "SRCriticSAN"):
        assert name in ARCH_REGISTRY
    net = build_network(yaml.safe_load(UNET_YAML)["network_d"])
    assert type(net).__name__ == "UNetDiscriminatorSAN"
    assert list(net.san.layers) == [f"conv{i}" for i in range(1, 9)]  # upstream's SN layers
    assert net.san.config["filter_ratio"] == 0.5 and net.san.config["gain"] == 1.3
    assert net.san.config["interval"] == 2 and net.san.config["stride_mode"] == "exact" and net.san.config["seed"] == 7
    convs = _convs(net)
    assert {n for n, c in convs.items() if c.padding_mode == "circular"} == set(net.san.layers)
    assert convs["conv0"].padding_mode == convs["conv9"].padding_mode == "zeros"
    assert not any(k.endswith(("weight_orig", "weight_u")) for k in net.state_dict())  # no spectral norm
    # upstream's arguments and parameter shapes, plain weights
    ref = UNetDiscriminatorSN(3, num_feat=8, skip_connection=True)
    ref_shapes = {k.replace("weight_orig", "weight"): v.shape for k, v in ref.state_dict().items()}
    assert {k: v.shape for k, v in net.state_dict().items()} == {
        k: v for k, v in ref_shapes.items() if not k.endswith(("weight_u", "weight_v"))
    }

    vgg = build_network({"type": "VGGStyleDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8, "input_size": 128})
    assert set(vgg.san.layers) == {n for n, m in vgg.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert all(c.padding_mode == "circular" for c in _convs(vgg).values())
    critic = build_network({"type": "SRCriticSAN", "num_feat": 8, "max_feat": 16, "num_stages": 5})
    assert len(critic.san.layers) == 12  # 10 convs + 2 linear, the paper's critic
    with pytest.raises(ValueError, match=r"SRCriticSAN: expected 128×128 inputs \(gt_size\), got 96×96"):
        critic(torch.rand(1, 3, 96, 96))


@pytest.mark.parametrize("kind", ["UNetDiscriminatorSAN", "VGGStyleDiscriminatorSAN", "SRCriticSAN"])
def test_first_forward_normalizes_every_layer_to_one(kind: str) -> None:
    torch.manual_seed(0)
    kwargs = {"num_in_ch": 3, "num_feat": 8}
    net = build_network({"type": kind, **kwargs})
    before = {n: m.weight.detach().clone() for n, m in net.san.layers.items()}
    net(torch.rand(2, 3, 128, 128))
    for name, layer in net.san.layers.items():
        assert not torch.equal(layer.weight, before[name]), name
        size = net.san.input_sizes.get(name)
        assert fx.one_sparse_gain(layer, size) == pytest.approx(1.0, rel=1e-5), name


def test_official_sn_checkpoint_loads_into_the_san_arch() -> None:
    torch.manual_seed(0)
    official = UNetDiscriminatorSN(3, num_feat=8)
    official(torch.rand(1, 3, 32, 32))  # one SN power iteration: u/v differ from their init
    state = official.state_dict()
    net = build_network({"type": "UNetDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8})
    net.load_state_dict(state, strict=True)
    for i in range(1, 9):
        assert torch.equal(getattr(net, f"conv{i}").weight, state[f"conv{i}.weight_orig"])
    assert torch.equal(net.conv0.weight, state["conv0.weight"]) and torch.equal(net.conv9.bias, state["conv9.bias"])
    assert net.san.calls == 0 and set(net.san._pending) == set(net.san.layers)  # normalized at its first forward
    # a plain (SAN) checkpoint loads unchanged
    again = build_network({"type": "UNetDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8})
    again.load_state_dict(net.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), net.state_dict().values()))


def test_official_sn_checkpoint_loads_into_the_reparametrized_form() -> None:
    import inspect

    from san_core import SAN

    if "form" not in inspect.signature(SAN).parameters:
        pytest.skip("this san_core has no form= option")
    torch.manual_seed(0)
    state = UNetDiscriminatorSN(3, num_feat=8).state_dict()
    net = build_network(
        {"type": "UNetDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8, "san": {"form": "reparametrize"}}
    )
    net.load_state_dict(state, strict=True)
    for i in range(1, 9):
        assert torch.equal(getattr(net, f"conv{i}").parametrizations.weight.original, state[f"conv{i}.weight_orig"])
    net(torch.rand(1, 3, 32, 32))  # W / s: every SAN layer's effective weight has constant 1 after its first forward
    for name, layer in net.san.layers.items():
        assert fx.one_sparse_gain(layer, net.san.input_sizes[name]) == pytest.approx(1.0, rel=1e-5), name


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"filter_ratio": 2}, r"^network_d\.san: expected filter_ratio in \(0, 1\], got 2$"),
        ({"filtr_ratio": 0.5}, r"^network_d\.san: unknown SAN option 'filtr_ratio'; did you mean filter_ratio\?"),
        ({"stride_mode": "fast"}, r"^network_d\.san: expected stride_mode in \('paper', 'exact'\), got 'fast'$"),
        ({"form": "authors"}, r"^network_d\.san: expected form in \('rescale', 'reparametrize'\), got 'authors'$"),
        ({"sync_free": "yes"}, r"^network_d\.san: expected sync_free to be None or a bool, got 'yes'$"),
        ({"compile_step": 1}, r"^network_d\.san: expected compile_step to be a bool, got 1$"),
        ({"cuda_graph": "on"}, r"^network_d\.san: expected cuda_graph to be a bool, got 'on'$"),
        ({"compile_step": True, "sync_free": False}, r"^network_d\.san: compile_step/cuda_graph compile the sync-free"),
        ({"interval": 0}, r"^network_d\.san: expected interval to be an int >= 1, got 0$"),
        ({"targets": []}, r"^network_d\.san\.targets: expected ~, a glob string or a list of glob strings, got \[\]$"),
        ({"circular_padding": "yes"}, r"^network_d\.san\.circular_padding: expected true or false, got 'yes'$"),
        ([0.5], r"^network_d\.san: expected a mapping of SAN options, got \[0\.5\]$"),
    ],
)
def test_bad_san_option_is_one_clear_line(block: object, message: str) -> None:
    with pytest.raises(SANOptionError, match=message) as info:
        parse_san_block(block)
    assert "\n" not in str(info.value)


def test_bad_option_in_the_arch_is_refused_when_built() -> None:
    with pytest.raises(SANOptionError, match=r"UNetDiscriminatorSAN\.san: expected gain"):
        build_network({"type": "UNetDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8, "san": {"gain": -1}})
    with pytest.raises(
        ValueError, match=r"^SAN: no layer matched targets=\['nope\*'\] exclude=\[\] in UNetDiscriminatorSAN"
    ):
        build_network({"type": "UNetDiscriminatorSAN", "num_in_ch": 3, "num_feat": 8, "san": {"targets": "nope*"}})
