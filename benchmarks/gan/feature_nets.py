"""The feature networks a run can be scored with, each carrying the names its numbers are printed under."""

from __future__ import annotations

from pathlib import Path

import torch

from .classifier import CifarResNet, load_classifier
from .data import SHARED_DATA
from .inception import load_inception
from .metrics import FeatureNet

DEFAULT_CLASSIFIER = SHARED_DATA / "cifar10_classifiers" / "resnet20-12fca82f.th"
METRICS = ("classifier", "inception", "random")


def make_feature_net(
    kind: str, classifier: str | Path | None = None, inception_weights: str | Path | None = None
) -> FeatureNet:
    """``classifier``: a trained CIFAR-10 ResNet (pooled 64-d features, softmax for IS), the default here;
    ``inception``: pytorch-fid's Inception-v3 (2048-d pool3, 1008-way softmax), needs a weights file;
    ``random``: an untrained, seeded resnet20 — only for pipeline tests without the shared data.
    """
    if kind == "classifier":
        path = Path(classifier) if classifier else DEFAULT_CLASSIFIER
        if not path.is_file():
            raise FileNotFoundError(
                f"classifier weights not found at {path}: pass --classifier PATH (a cifar10_classifiers/*.th file), "
                "--inception-weights PATH, or --metric random (pipeline test only)"
            )
        model = load_classifier(path)
        arch = path.name.split("-")[0]
        return FeatureNet(
            f"clf-{path.stem}", f"classifier-FID ({arch})", f"classifier-IS ({arch})", model.features, model
        )
    if kind == "inception":
        model = load_inception(inception_weights)
        stem = Path(str(inception_weights)).stem
        return FeatureNet(f"inception-{stem}", "FID (Inception-v3)", "IS (Inception-v3)", model.features, model)
    if kind == "random":
        torch.manual_seed(0)
        model = CifarResNet(3).eval().requires_grad_(False)
        return FeatureNet(
            "random-resnet20-seed0",
            "random-feature-FID (untrained resnet20, test only)",
            "random-feature-IS (untrained resnet20, test only)",
            model.features,
            model,
        )
    raise ValueError(f"metric: expected one of {METRICS}, got {kind!r}")
