"""The paper's SR critic has one definition (:mod:`san_compat.sr_critic`) behind both adapters' critics.

``san_mmagic.SRCritic`` and ``san_basicsr.SRCriticSAN`` must keep the checkpoint layout they always had
(``features.<i>.*`` / ``classifier.<i>.*``) and compute the same function from the same weights; the layout is
checked against the paper's description (5 stages of conv-BN-LReLU ×2, FC-LReLU-FC), not against the code.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
from san_compat.sr_critic import paper_sr_critic_layers
from torch import nn

MISSING = [m for m in ("mmengine", "mmagic", "mmcv", "basicsr") if importlib.util.find_spec(m) is None]
needs_both = pytest.mark.skipif(bool(MISSING), reason=f"needs the [mmagic] and [basicsr] extras; missing {MISSING}")

W0 = "features.0.weight"  # the first conv (a SAN layer)

#: (mmagic SRCritic kwargs, basicsr SRCriticSAN kwargs, in_channels, width, max_width, num_stages)
CASES = [
    ({}, {}, 3, 64, 512, 5),
    (
        dict(in_channels=1, mid_channels=8, max_channels=16, num_stages=3, negative_slope=0.2),
        dict(num_in_ch=1, num_feat=8, max_feat=16, num_stages=3, negative_slope=0.2),
        1, 8, 16, 3,
    ),
]  # fmt: skip


def expected_shapes(cin: int, width: int, max_width: int, stages: int) -> dict[str, tuple[int, ...]]:
    """The checkpoint layout from the paper's description: per stage, conv3×3 s1 (bias only in stage 0), BN,
    LReLU, conv4×4 s2, BN, LReLU (6 modules); then Linear(16·c, width), LReLU, Linear(width, 1)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(stages):
        c = min(max_width, width * 2**i)
        for j, (k, c_in) in enumerate(((3, cin), (4, c))):
            conv, bn = f"features.{6 * i + 3 * j}", f"features.{6 * i + 3 * j + 1}"
            shapes[f"{conv}.weight"] = (c, c_in, k, k)
            if i == 0 and j == 0:
                shapes[f"{conv}.bias"] = (c,)
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{bn}.{name}"] = (c,)
            shapes[f"{bn}.num_batches_tracked"] = ()
        cin = c
    shapes.update({"classifier.0.weight": (width, 16 * cin), "classifier.0.bias": (width,)})
    shapes.update({"classifier.2.weight": (1, width), "classifier.2.bias": (1,)})
    return shapes


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("case", CASES, ids=["default", "small"])
def test_shared_layers_follow_the_paper(case: tuple) -> None:
    *_, cin, width, max_width, stages = case
    body = paper_sr_critic_layers(cin, width, max_width, stages, 0.2)
    net = nn.Module()
    net.features, net.classifier = body.features, body.classifier
    assert _shapes(net) == expected_shapes(cin, width, max_width, stages)
    assert body.input_size == 4 * 2**stages
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}
    x = torch.rand(2, cin, body.input_size, body.input_size)
    assert body.classifier(body.features(x).flatten(1)).shape == (2, 1)
    with pytest.raises(ValueError, match=r"^paper_sr_critic_layers: expected num_stages >= 1, got 0$"):
        paper_sr_critic_layers(num_stages=0)


def test_importing_san_compat_stays_light() -> None:
    code = "import sys, san_compat; print('torch' in sys.modules, 'san_compat.sr_critic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


@needs_both
@pytest.mark.parametrize("case", CASES, ids=["default", "small"])
def test_both_adapters_critics_share_layout_and_function(case: tuple) -> None:
    import san_basicsr  # noqa: F401  (compat step + registrations)
    import san_mmagic  # noqa: F401
    from san_basicsr.archs import SRCriticSAN
    from san_mmagic.models import SRCritic

    kw_mmagic, kw_basicsr, cin, width, max_width, stages = case
    torch.manual_seed(0)
    mm = SRCritic(**kw_mmagic)
    torch.manual_seed(1)  # different initial weights: the comparison below is not trivially true
    bs = SRCriticSAN(**kw_basicsr, san={"circular_padding": False})  # zero padding, as SRCritic before SANHook
    expected = expected_shapes(cin, width, max_width, stages)
    assert list(mm.state_dict()) == list(bs.state_dict()) == list(expected)  # same keys, same order
    assert _shapes(mm) == _shapes(bs) == expected
    assert mm.input_size == bs.input_size == 4 * 2**stages

    assert not torch.equal(mm.state_dict()[W0], bs.state_dict()[W0])
    bs.load_state_dict(mm.state_dict(), strict=True)
    bs(torch.rand(1, cin, bs.input_size, bs.input_size))  # its first forward normalizes its SAN layers
    assert not torch.equal(bs.state_dict()[W0], mm.state_dict()[W0])  # so its weights differ from mm's again
    mm.load_state_dict(bs.state_dict(), strict=True)  # and back: the basicsr checkpoint loads into mmagic's
    x = torch.rand(3, cin, mm.input_size, mm.input_size)
    mm.eval()
    bs.eval()
    with torch.no_grad():
        torch.testing.assert_close(mm(x), bs(x), rtol=0, atol=0)
    mm.train()  # BatchNorm on batch statistics
    bs.train()
    with torch.no_grad():
        torch.testing.assert_close(mm(x), bs(x), rtol=0, atol=0)
