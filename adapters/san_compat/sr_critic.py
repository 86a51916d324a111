"""The SAN paper's super-resolution critic body, one torch-only definition shared by two adapters.

``san_mmagic.SRCritic`` (an MMEngine ``BaseModule``) and ``san_basicsr.SRCriticSAN`` (a BasicSR arch that owns
its :class:`san_core.SAN`) both build their layers with :func:`paper_sr_critic_layers` and keep them as the
attributes ``features`` and ``classifier``, so their ``state_dict`` keys (``features.<i>.*``,
``classifier.<i>.*``) and parameter shapes are identical. Each adapter keeps its own arguments, input handling
(cropping or refusing other sizes) and error messages. Nothing else imports this module (``san_compat``'s
``__init__`` does not), so importing ``san_compat`` stays light.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

__all__ = ["PaperSRCriticLayers", "paper_sr_critic_layers"]


class PaperSRCriticLayers(NamedTuple):
    """The critic's two stacks and the input side they expect (the head sees a ``4×4`` map)."""

    features: nn.Sequential  # num_stages × (3×3 s1 conv, BN, LReLU, 4×4 s2 conv, BN, LReLU)
    classifier: nn.Sequential  # Linear(16·c_last, width), LReLU, Linear(width, 1)
    input_size: int  # 4·2^num_stages


def paper_sr_critic_layers(
    in_channels: int = 3,
    width: int = 64,
    max_width: int = 512,
    num_stages: int = 5,
    negative_slope: float = 0.1,
) -> PaperSRCriticLayers:
    """The paper's SR critic: 10 convs (5 stages) and 2 fully-connected layers, BN, LeakyReLU(0.1) by default.

    Stage ``i`` has ``min(max_width, width·2^i)`` channels; only the first conv has a bias; every conv pads by 1
    (zero padding: an adapter that wants circular padding switches it when it applies SAN). Forward is
    ``classifier(features(x).flatten(1))`` on ``input_size × input_size`` inputs. Parameters are created in
    module order (so a seeded build gives the same initial weights in both adapters).
    """
    if num_stages < 1:
        raise ValueError(f"paper_sr_critic_layers: expected num_stages >= 1, got {num_stages!r}")
    widths = [min(max_width, width * 2**i) for i in range(num_stages)]
    layers: list[nn.Module] = []
    cin = in_channels
    for i, cout in enumerate(widths):
        layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=i == 0), nn.BatchNorm2d(cout), nn.LeakyReLU(negative_slope)]
        layers += [nn.Conv2d(cout, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(negative_slope)]
        cin = cout
    classifier = nn.Sequential(nn.Linear(widths[-1] * 16, width), nn.LeakyReLU(negative_slope), nn.Linear(width, 1))
    return PaperSRCriticLayers(nn.Sequential(*layers), classifier, 4 * 2**num_stages)
