"""``to_circular_padding_``: circular padding in place (Lemma 1 is exact under it) and its exact inverse."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from san_core import to_circular_padding_

CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_CLS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
# (dims, kernel, padding, stride, dilation, groups): asymmetric kernels/padding, strides, dilation, groups
GEOMETRIES = [
    (1, 3, 1, 1, 1, 1),
    (1, 5, 2, 2, 1, 2),
    (2, (3, 5), (1, 2), 1, 1, 1),
    (2, 3, 2, (2, 1), 2, 2),
    (3, 3, 1, 1, 1, 1),
    (3, (1, 3, 3), (0, 1, 1), 2, 1, 1),
]


def _conv(dims: int, kernel, padding, stride, dilation, groups, mode: str) -> nn.Module:
    torch.manual_seed(0)
    return CONV_CLS[dims](
        4, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode
    )


def _input(dims: int) -> torch.Tensor:
    return torch.randn((2, 4, *(7, 6, 5)[:dims]), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}d-k{g[1]}-p{g[2]}-s{g[3]}-d{g[4]}-g{g[5]}")
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate"])
def test_circular_padding_and_exact_restore(geometry: tuple, mode: str) -> None:
    dims = geometry[0]
    model = nn.Sequential(_conv(*geometry, mode=mode), nn.LeakyReLU())
    conv = model[0]
    x = _input(dims)
    y_before = model(x)
    ids = [id(p) for p in conv.parameters()]
    attrs_before = dict(conv.__dict__)
    padding = conv.padding

    record = to_circular_padding_(model)
    assert record.changed == {"0": mode} and record.skipped == {}
    assert conv.padding_mode == "circular"
    assert [id(p) for p in conv.parameters()] == ids
    assert conv.padding == padding  # amount kept
    y = conv(x)
    assert y.shape == y_before.shape
    pad = [p for p in reversed(conv.padding) for _ in range(2)]  # F.pad order: last dim first
    ref = CONV_FN[dims](
        F.pad(x, pad, mode="circular"), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups
    )
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    if mode == "zeros" or any(conv.padding):
        assert not torch.allclose(model(x), y_before)  # the change is visible

    assert record.restore() == ["0"]
    assert record.changed == {}
    assert conv.padding_mode == mode
    assert conv.__dict__.keys() == attrs_before.keys()  # no bookkeeping attribute left behind
    assert [id(p) for p in conv.parameters()] == ids
    assert torch.equal(model(x), y_before)


def test_applying_twice_raises_and_reapplying_after_restore_works() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))
    record = to_circular_padding_(model)
    with pytest.raises(RuntimeError, match=r"already applied to \['0', '1'\].*restore"):
        to_circular_padding_(model)
    with pytest.raises(RuntimeError, match=r"already applied to \['1'\]"):
        to_circular_padding_(model, "1")
    assert [m.padding_mode for m in model] == ["circular", "circular"]
    record.restore()
    assert [m.padding_mode for m in model] == ["zeros", "reflect"]
    again = to_circular_padding_(model)
    assert again.changed == {"0": "zeros", "1": "reflect"}
    again.restore()
    assert [m.padding_mode for m in model] == ["zeros", "reflect"]


def test_transposed_convs_are_skipped_with_a_reason() -> None:
    model = nn.Sequential(
        nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1), nn.ConvTranspose1d(3, 3, 3), nn.Conv1d(3, 3, 3)
    )
    record = to_circular_padding_(model)
    assert set(record.skipped) == {"0", "1"}
    assert all("transposed" in why and "zeros" in why for why in record.skipped.values())
    assert record.changed == {"2": "zeros"}
    assert model[0].padding_mode == model[1].padding_mode == "zeros"
    x = torch.randn(1, 3, 5, 5)
    assert model[0](x).shape == (1, 3, 10, 10)  # still runs


def test_only_targets_change_and_circular_convs_are_not_recorded() -> None:
    model = nn.Sequential()
    model.add_module("a", nn.Conv2d(3, 3, 3, padding=1))
    model.add_module("b", nn.Conv2d(3, 3, 3, padding=1))
    model.add_module("c", nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular"))
    record = to_circular_padding_(model, ["a", "c"])
    assert record.changed == {"a": "zeros"}
    assert (model.a.padding_mode, model.b.padding_mode, model.c.padding_mode) == ("circular", "zeros", "circular")
    record.restore()
    assert (model.a.padding_mode, model.b.padding_mode, model.c.padding_mode) == ("zeros", "zeros", "circular")
    record = to_circular_padding_(model, exclude="a")
    assert record.changed == {"b": "zeros"} and model.a.padding_mode == "zeros"


def test_bad_target_changes_nothing() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.Linear(3, 3))
    with pytest.raises(ValueError, match="layer '1' is Linear"):
        to_circular_padding_(model, ["0", "1"])
    assert model[0].padding_mode == "zeros"
