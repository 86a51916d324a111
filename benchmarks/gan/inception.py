"""Standard FID/IS feature network: Inception-v3 as in pytorch-fid, with weights from a local file.

The TF "2015-12-05" Inception graph that FID was defined with differs from torchvision's Inception-v3 in
four places, re-implemented here as block forwards: the average pools of the A, C and first E blocks
exclude padding (``count_include_pad=False``) and the last E block pools with a max instead of an average;
the classifier has 1008 outputs. Images are resized bilinearly to 299×299 and mapped to [-1, 1]. FID uses the
2048-d pool3 features, IS the softmax of the 1008 logits. Weights: pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (not shipped here; pass ``--inception-weights PATH``).
"""

from __future__ import annotations

import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


class InceptionMissing(FileNotFoundError):
    """No Inception weights file; the message says what to pass."""


def _pool(x: Tensor, kind: str) -> Tensor:
    if kind == "max":
        return F.max_pool2d(x, 3, 1, 1)
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _forward_a(self: nn.Module, x: Tensor) -> Tensor:
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_pool(x, "avg"))], 1)


def _forward_c(self: nn.Module, x: Tensor) -> Tensor:
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    d = x
    for i in range(1, 6):
        d = getattr(self, f"branch7x7dbl_{i}")(d)
    return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_pool(x, "avg"))], 1)


def _forward_e(self: nn.Module, x: Tensor, pool: str) -> Tensor:
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
    return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(_pool(x, pool))], 1)


class FIDInception(nn.Module):
    """``features(x01)`` → (pool3 2048-d, 1008 logits) of images in [0, 1]."""

    name = "Inception-v3 (pytorch-fid weights)"

    def __init__(self) -> None:
        super().__init__()
        import san_compat

        san_compat.ensure_torchvision_importable()
        from torchvision.models.inception import Inception3

        self.net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        for block in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            m = self.net.get_submodule(block)
            m.forward = types.MethodType(_forward_a, m)
        for block in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            m = self.net.get_submodule(block)
            m.forward = types.MethodType(_forward_c, m)
        for block, pool in (("Mixed_7b", "avg"), ("Mixed_7c", "max")):
            m = self.net.get_submodule(block)
            m.forward = types.MethodType(lambda self, x, _p=pool: _forward_e(self, x, _p), m)

    def features(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        n = self.net
        h = F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        h = n.maxpool1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(h))))
        h = n.maxpool2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(h)))
        for block in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            h = getattr(n, f"Mixed_{block}")(h)
        pool3 = h.mean(dim=(2, 3))
        return pool3, n.fc(pool3)


def load_inception(path: str | Path | None) -> FIDInception:
    """Build :class:`FIDInception` and load ``path`` (a pytorch-fid state dict) strictly."""
    if path is None:
        raise InceptionMissing(
            f"Inception FID/IS needs the pytorch-fid weights file {WEIGHTS_NAME}: pass --inception-weights PATH "
            "(not available on this machine; the default metric is classifier-FID/IS)"
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise InceptionMissing(f"--inception-weights: no file at {path} (expected pytorch-fid's {WEIGHTS_NAME})")
    model = FIDInception()
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        missing, unexpected = model.net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path}: not a pytorch-fid Inception state dict: {err}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a pytorch-fid Inception state dict; missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval().requires_grad_(False)
