"""An independent float64 check of SAN's constant for the adapter tests (no san_core code involved).

For a Conv2d with circular padding, ‖W‖₀,∞ is the largest |2-D DFT| over all kernels ``w_ij`` placed on the conv's
input grid (taps wrap around); for a Linear or Embedding weight, σ₁. In the ``"reparametrize"`` form
``layer.weight`` is ``W / s``, so the check reads the weight the forward uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn


def one_sparse_gain(layer: nn.Module, input_size: Optional[Sequence[int]], weight: Optional[Tensor] = None) -> float:
    """‖W‖₀,∞ of a Conv2d on an ``input_size`` grid (stride 1 or the paper's stride mode), σ₁ of a Linear/Embedding;
    of ``weight`` if given (e.g. the raw weight of the reparametrized form), else of ``layer.weight``."""
    weight = (layer.weight if weight is None else weight).detach().double()
    if not isinstance(layer, nn.Conv2d):
        return float(torch.linalg.svdvals(weight.reshape(weight.shape[0], -1))[0])
    assert input_size is not None
    h, w = input_size
    grid = torch.zeros(*weight.shape[:2], h, w, dtype=torch.float64)
    for i in range(weight.shape[2]):
        for j in range(weight.shape[3]):
            grid[..., i % h, j % w] += weight[..., i, j]
    return float(torch.fft.fft2(grid).abs().amax())
