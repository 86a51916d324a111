"""Layer selection: which layers SAN normalizes (``select_layers``/``dry_run``) and its errors."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from san_core import SAN, dry_run, select_layers, strip_spectral_norm_, to_circular_padding_


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv3d(4, 4, 3, padding=1)


class Net(nn.Module):
    """Every supported layer type once, nested names, and unsupported leaves (BatchNorm, activation)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(3, 4, 3)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.up1 = nn.ConvTranspose1d(4, 4, 3)
        self.up2 = nn.ConvTranspose2d(4, 4, 3)
        self.up3 = nn.ConvTranspose3d(4, 4, 3)
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 1)
        self.act = nn.LeakyReLU(0.2)


SUPPORTED = [
    "stem",
    "blocks.0.conv1",
    "blocks.0.conv2",
    "blocks.1.conv1",
    "blocks.1.conv2",
    "up1",
    "up2",
    "up3",
    "embed",
    "head",
]


def test_default_selects_every_supported_layer_and_explains_the_rest() -> None:
    selection = select_layers(Net())
    assert selection.matched == SUPPORTED
    assert dict(selection.unmatched) == {
        "blocks.0.norm": "unsupported type BatchNorm2d",
        "blocks.1.norm": "unsupported type BatchNorm2d",
        "act": "unsupported type LeakyReLU",
    }
    # containers (blocks, blocks.0) are neither matched nor listed
    assert "blocks" not in dict(selection.unmatched) and "blocks.0" not in dict(selection.unmatched)


def test_include_and_exclude_globs() -> None:
    net = Net()
    assert select_layers(net, "blocks.*.conv1").matched == ["blocks.0.conv1", "blocks.1.conv1"]
    # '*' crosses dots; a list of patterns is a union
    assert select_layers(net, ["blocks*", "head"]).matched == [*SUPPORTED[1:5], "head"]
    assert select_layers(net, "up?").matched == ["up1", "up2", "up3"]
    assert select_layers(net, "blocks.[1].*").matched == ["blocks.1.conv1", "blocks.1.conv2"]
    selection = select_layers(net, exclude=["blocks.1.*", "embed"])
    assert selection.matched == [n for n in SUPPORTED if not n.startswith("blocks.1.") and n != "embed"]
    reasons = dict(selection.unmatched)
    assert reasons["blocks.1.conv1"] == reasons["embed"] == "excluded"
    selection = select_layers(net, "blocks.*", exclude="*.conv2")
    assert selection.matched == ["blocks.0.conv1", "blocks.1.conv1"]
    reasons = dict(selection.unmatched)
    assert reasons["blocks.0.conv2"] == "excluded"
    assert reasons["stem"] == reasons["head"] == "not in targets"


def test_dry_run_prints_matched_and_unmatched_with_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    selection = dry_run(net, "blocks.*", exclude="blocks.1.conv2")
    out = capsys.readouterr().out
    assert selection.matched == ["blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1"]
    assert "matched (3):" in out and "unmatched (" in out
    for name in selection.matched:
        assert f"+ {name}" in out
    assert "- blocks.1.conv2  [excluded]" in out
    assert "- stem  [not in targets]" in out
    assert "- blocks.0.norm  [unsupported type BatchNorm2d]" in out
    assert out.strip() == selection.report()
    # a dry run changes nothing
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(not m._forward_pre_hooks for m in net.modules())


def test_nothing_matched_names_patterns_and_close_names() -> None:
    with pytest.raises(ValueError) as info:
        select_layers(Net(), "block.*.conv9")
    msg = str(info.value)
    assert "'block.*.conv9'" in msg
    assert "closest layer names" in msg and "blocks.0.conv1" in msg
    with pytest.raises(ValueError, match=r"exclude=\['\*'\]") as info:
        select_layers(Net(), exclude="*")
    assert "stem" in str(info.value)  # the available names are listed


def test_exact_name_that_does_not_exist_lists_near_names() -> None:
    with pytest.raises(ValueError, match=r"no layer named 'blocks\.0\.conv'") as info:
        select_layers(Net(), ["head", "blocks.0.conv"])
    assert "blocks.0.conv1" in str(info.value) and "blocks.0.conv2" in str(info.value)


def test_exact_name_of_unsupported_type_names_the_type() -> None:
    with pytest.raises(ValueError, match=r"'blocks\.0\.norm' is BatchNorm2d; expected one of .*Linear.*Embedding"):
        select_layers(Net(), "blocks.0.norm")


def test_module_without_supported_layers_and_bad_pattern_types() -> None:
    with pytest.raises(ValueError, match="has no supported layers"):
        select_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))
    with pytest.raises(TypeError, match="targets: expected a glob string"):
        select_layers(Net(), ["head", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="exclude: expected a glob string"):
        select_layers(Net(), exclude=[""])


def test_every_entry_point_uses_the_same_selection_and_message_prefix() -> None:
    net = Net()
    assert list(SAN(net, "blocks.*.conv1").layers) == ["blocks.0.conv1", "blocks.1.conv1"]
    with pytest.raises(ValueError, match=r"^to_circular_padding_: layer 'head' is Linear"):
        to_circular_padding_(Net(), "head")  # padding applies to convs only
    with pytest.raises(ValueError, match=r"^strip_spectral_norm_: no layer named 'nope'"):
        strip_spectral_norm_(Net(), "nope")


@pytest.mark.parametrize(
    ("entry", "what", "layer"),
    [
        (lambda m: SAN(m), "SAN", nn.Conv2d(3, 4, 3)),
        (lambda m: select_layers(m), "SAN", nn.Embedding(5, 3)),
        (lambda m: to_circular_padding_(m), "to_circular_padding_", nn.ConvTranspose1d(2, 2, 3)),
        (lambda m: strip_spectral_norm_(m), "strip_spectral_norm_", nn.utils.spectral_norm(nn.Linear(3, 2))),
    ],
)
def test_a_bare_layer_is_refused_with_a_hint_to_wrap_it(
    entry: Callable[[nn.Module], object], what: str, layer: nn.Module
) -> None:
    """Layers are chosen by name; a bare layer has only the empty name, so every entry point asks for a container."""
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    hooks = list(layer._forward_pre_hooks)
    with pytest.raises(ValueError) as info:
        entry(layer)
    assert str(info.value) == (
        f"{what}: got a bare {type(layer).__name__}; layers are chosen by name inside a container, "
        "so wrap it (e.g. nn.Sequential(layer))"
    )
    assert list(layer.state_dict()) == list(state)
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in state.items())
    assert list(layer._forward_pre_hooks) == hooks and not hasattr(layer, "_san_original_padding_mode")
    assert select_layers(nn.Sequential(layer), types=(type(layer),)).matched == ["0"]  # wrapped, it is found
