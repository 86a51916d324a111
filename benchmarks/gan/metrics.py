"""Fréchet distance and Inception Score on a feature network's (features, logits); reference stats cached on disk.

``d²((μ₁, Σ₁), (μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})`` in float64; ``IS = exp(E_x KL(p(y|x) ‖ p(y)))``.
Every number carries its metric's name: ``classifier-FID (resnet20)`` is *not* FID and is comparable only
with itself (same classifier, same reference images, same sample count).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import atomic_write
from .collapse import PixelMoments, top_class_fraction

FeatureFn = Callable[[Tensor], "tuple[Tensor, Tensor]"]


def sqrtm_trace(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr((Σ₁Σ₂)^{1/2})``: scipy's ``sqrtm`` when importable, else ``Σ eig(A Σ₂ A)^{1/2}`` with ``A = Σ₁^{1/2}``."""
    try:
        from scipy import linalg
    except ImportError:
        return _sqrtm_trace_eigh(s1, s2)
    with warnings.catch_warnings():  # near-singular Σ (e.g. a collapsed generator) is handled below
        warnings.simplefilter("ignore")
        root = linalg.sqrtm(s1 @ s2)
    root = root[0] if isinstance(root, tuple) else root
    if not np.isfinite(root).all():
        return _sqrtm_trace_eigh(s1, s2)
    return float(np.real(np.trace(root)))


def _sqrtm_trace_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """Symmetric form: ``(Σ₁Σ₂)^{1/2}`` is similar to ``(A Σ₂ A)^{1/2}``, PSD, so the trace is Σ √λ (torch float64)."""
    a_, b_ = torch.from_numpy(np.asarray(s1, np.float64)), torch.from_numpy(np.asarray(s2, np.float64))
    w, v = torch.linalg.eigh((a_ + a_.T) / 2)
    a = (v * w.clamp_min(0).sqrt()) @ v.T
    m = a @ b_ @ a
    return float(torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum())


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    mu1, mu2, s1, s2 = (np.asarray(a, np.float64) for a in (mu1, mu2, s1, s2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(
            f"frechet_distance: expected matching shapes, got {mu1.shape}/{mu2.shape}, {s1.shape}/{s2.shape}"
        )
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * sqrtm_trace(s1, s2))


def inception_score(logits: Tensor, splits: int = 1) -> tuple[float, float]:
    """Mean and std over ``splits`` of ``exp(mean KL(p(y|x) ‖ p(y)))`` from the logits (float64)."""
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for chunk in log_p.chunk(splits):
        log_py = torch.logsumexp(chunk, 0) - np.log(chunk.shape[0])
        scores.append(float(torch.exp((chunk.exp() * (chunk - log_py)).sum(1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


def stats(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = features.double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


@dataclass
class FeatureNet:
    """A named feature network: ``fn(x01) → (features, logits)``; ``fid_name``/``is_name`` label its numbers."""

    key: str
    fid_name: str
    is_name: str
    fn: FeatureFn
    module: Optional[nn.Module] = None

    def to(self, device: torch.device) -> FeatureNet:
        if self.module is not None:
            self.module.to(device)
        return self


@torch.no_grad()
def features_of(net: FeatureNet, images: Callable[[int, int], Tensor], n: int, batch: int) -> tuple[Tensor, Tensor]:
    """Run ``net`` on ``images(start, count)`` (float images in [0, 1]) in batches; returns CPU float64 tensors."""
    feats, logits = [], []
    for start in range(0, n, batch):
        f, lg = net.fn(images(start, min(batch, n - start)))
        feats.append(f.double().cpu())
        logits.append(lg.double().cpu())
    return torch.cat(feats), torch.cat(logits)


def reference_stats(
    net: FeatureNet, x_uint8: Tensor, source: str, n: int, cache: Path, device: torch.device, batch: int = 500
) -> dict[str, np.ndarray]:
    """μ, Σ of ``net`` on the first ``n`` of a fixed permutation (seed 0) of the real images; cached as ``.npz``."""
    n = min(n, x_uint8.shape[0])
    key = hashlib.sha1(f"{net.key}|{source}|{n}".encode()).hexdigest()[:12]
    path = cache / f"refstats-{net.key}-{n}-{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    idx = torch.randperm(x_uint8.shape[0], generator=torch.Generator().manual_seed(0))[:n]

    def images(start: int, count: int) -> Tensor:
        return x_uint8[idx[start : start + count]].to(device).float() / 255

    feats, logits = features_of(net, images, n, batch)
    mu, sigma = stats(feats)
    is_mean, _ = inception_score(logits, splits=1)
    out = {"mu": mu, "sigma": sigma, "n": np.asarray(n), "is": np.asarray(is_mean)}
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **out))
    return out


@torch.no_grad()
def evaluate_generator(
    net: FeatureNet,
    generator: nn.Module,
    ref: dict[str, np.ndarray],
    n: int,
    *,
    z_dim: int,
    num_classes: int,
    device: torch.device,
    batch: int = 250,
    seed: int = 12345,
    is_splits: int = 1,
) -> dict[str, float]:
    """``n`` samples from fixed noise (``seed``; class labels ``i mod K``), G in eval mode: FID-style, IS, and the
    collapse diagnostics ``pixel_std`` and ``top_class`` (see :mod:`.collapse`)."""
    gen = torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.eval()

    def images(start: int, count: int) -> Tensor:
        z = torch.randn(count, z_dim, generator=gen).to(device)
        y = (torch.arange(start, start + count) % num_classes).to(device) if num_classes else None
        return (generator(z, y).float().clamp(-1, 1) + 1) / 2

    moments = PixelMoments()

    def observed(start: int, count: int) -> Tensor:
        x = images(start, count)
        moments.add(x)
        return x

    try:
        feats, logits = features_of(net, observed, n, batch)
    finally:
        generator.train(was_training)
    mu, sigma = stats(feats)
    is_mean, is_std = inception_score(logits, splits=is_splits)
    return {"fid": frechet_distance(mu, sigma, ref["mu"], ref["sigma"]), "is": is_mean, "is_std": is_std,
            "pixel_std": moments.std(), "top_class": top_class_fraction(logits)}  # fmt: skip
