"""``LocalVGGPerceptualLoss``: mmagic's perceptual loss with VGG19 weights read from a local file.

mmagic's ``PerceptualVGG`` always calls ``torchvision.models.vgg19(pretrained=True)`` (its ``pretrained``
argument is ignored), i.e. it downloads at build time. This loss builds VGG19's feature extractor
itself (layer indices as in torchvision's ``vgg19().features``: ``'34'`` is conv5_4 before its ReLU,
the paper's ``L_features``) and loads it from ``vgg_path``, a torchvision state dict such as
``vgg19-dcbb9e9d.pth`` (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth). A missing path
fails at construction with one line saying what to set. Same call convention as mmagic's
``PerceptualLoss``: ``loss(x, gt) -> (perceptual, None)``.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS
from torch import Tensor, nn

from .weights import MissingWeightsError

__all__ = ["VGG_LAYOUTS", "LocalVGGPerceptualLoss"]

#: Conv widths per stage ("M" = 2×2 max-pool), as in Simonyan & Zisserman (2014) configurations D/E.
VGG_LAYOUTS: dict[str, list[Union[int, str]]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
VGG_HINT = "torchvision's VGG19 weights, https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


def vgg_features(vgg_type: str, num_layers: int) -> nn.Sequential:
    """The first ``num_layers`` modules of torchvision's ``vgg*.features`` layout (conv, ReLU, pool)."""
    layers: list[nn.Module] = []
    cin = 3
    for item in VGG_LAYOUTS[vgg_type]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(item)
    if num_layers > len(layers):
        raise ValueError(f"LocalVGGPerceptualLoss: {vgg_type} has {len(layers)} feature layers, asked for {num_layers}")
    return nn.Sequential(*layers[:num_layers])


def load_vgg_features(features: nn.Sequential, path: str) -> None:
    """Fill ``features`` from a torchvision VGG state dict: ``features.N.*`` keys (any prefix, maybe nested)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    by_suffix = {k[k.index("features.") :]: v for k, v in state.items() if "features." in k}
    wanted = {f"features.{k}": v for k, v in features.state_dict().items()}
    missing = sorted(set(wanted) - set(by_suffix))
    if missing:
        raise ValueError(f"LocalVGGPerceptualLoss: {path} lacks {missing[:3]}...; expected {VGG_HINT}")
    features.load_state_dict({k[len("features.") :]: by_suffix[k] for k in wanted})


@MODELS.register_module()
class LocalVGGPerceptualLoss(nn.Module):
    """``perceptual_weight · Σ_k w_k · criterion(φ_k(x), φ_k(gt))`` with VGG features ``φ_k`` loaded from ``vgg_path``.

    Args:
        layer_weights: ``{feature index: weight}``, e.g. ``{'34': 1.0}`` (VGG19 conv5_4, before ReLU).
        vgg_path: local torchvision VGG state dict; required unless ``random_init``.
        vgg_type: ``'vgg19'`` or ``'vgg16'``.
        use_input_norm: normalize inputs in [0, 1] with ImageNet's mean/std.
        perceptual_weight: overall weight.
        norm_img: map inputs from [-1, 1] to [0, 1] first.
        criterion: ``'l1'`` or ``'mse'``.
        style_weight: only 0 is supported (kept for config compatibility with mmagic's loss).
        random_init: use a randomly initialised VGG (smoke tests only: the loss is then meaningless).
    """

    mean: Tensor  # ImageNet mean/std buffers, (1, 3, 1, 1)
    std: Tensor

    def __init__(
        self,
        layer_weights: dict,
        vgg_path: Optional[str] = None,
        vgg_type: str = "vgg19",
        use_input_norm: bool = True,
        perceptual_weight: float = 1.0,
        norm_img: bool = False,
        criterion: str = "l1",
        style_weight: float = 0.0,
        random_init: bool = False,
    ) -> None:
        super().__init__()
        if vgg_type not in VGG_LAYOUTS:
            raise ValueError(f"LocalVGGPerceptualLoss: expected vgg_type in {sorted(VGG_LAYOUTS)}, got {vgg_type!r}")
        if criterion not in ("l1", "mse"):
            raise ValueError(f"LocalVGGPerceptualLoss: expected criterion 'l1' or 'mse', got {criterion!r}")
        if style_weight:
            raise ValueError(f"LocalVGGPerceptualLoss: style loss is not supported, got style_weight={style_weight}")
        if not layer_weights or not all(str(k).isdigit() for k in layer_weights):
            raise ValueError(
                f"LocalVGGPerceptualLoss: expected layer_weights like {{'34': 1.0}}, got {layer_weights!r}"
            )
        if not random_init and not (vgg_path and os.path.isfile(vgg_path)):
            raise MissingWeightsError(
                f"LocalVGGPerceptualLoss: VGG weights not found (vgg_path={vgg_path!r}); download {VGG_HINT} and set "
                "SAN_VGG19_PATH or --cfg-options model.perceptual_loss.vgg_path=PATH"
            )
        self.layer_weights = {str(k): float(v) for k, v in layer_weights.items()}
        self.perceptual_weight, self.norm_img, self.use_input_norm = perceptual_weight, norm_img, use_input_norm
        self.criterion = nn.L1Loss() if criterion == "l1" else nn.MSELoss()
        self.vgg = vgg_features(vgg_type, max(map(int, self.layer_weights)) + 1)
        if random_init:
            print_log("LocalVGGPerceptualLoss: random_init=True, the VGG is random", logger="current", level=30)
        else:
            load_vgg_features(self.vgg, str(vgg_path))
        self.vgg.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def _features(self, x: Tensor) -> dict[str, Tensor]:
        if self.norm_img:
            x = (x + 1.0) * 0.5
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        out = {}
        for name, layer in self.vgg.named_children():
            x = layer(x)
            if name in self.layer_weights:
                out[name] = x.clone()
        return out

    def forward(self, x: Tensor, gt: Tensor) -> tuple[Tensor, None]:
        feats = self._features(x)
        with torch.no_grad():
            targets = self._features(gt.detach())
        loss = sum(self.criterion(feats[k], targets[k]) * w for k, w in self.layer_weights.items())
        return self.perceptual_weight * loss, None
