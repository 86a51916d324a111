"""Collapse diagnostics of one evaluation, and the rule that calls a run "collapsed".

Per evaluation (all cheap next to the FID features):

- ``pixel_std``: per-pixel standard deviation across the generated samples (images in [0, 1]), averaged over
  pixels and channels; a generator that draws the same image for every z scores 0; real CIFAR-10 ≈ 0.25.
- ``top_class``: the fraction of samples the scoring classifier puts in its most frequent class (0.1 for a
  generator that covers the 10 classes evenly, 1.0 when every sample gets one class).
- ``d_real`` / ``d_fake``: the critic's mean ``|D(x)|`` on 256 fixed real training images and on 256 samples
  (critic in eval mode, no gradient): the scale the hinge loss sees.
- ``d_loss`` / ``g_loss``: the mean logged critic and generator losses since the previous evaluation.
- ``sat_real`` / ``sat_fake`` (training batches, mean of the logged steps since the previous evaluation): the
  fraction of real samples with ``D(x) > 1`` and of fakes with ``D(G(z)) < −1``, whose hinge term gives the critic
  no gradient; ``g_grad``: the global L2 norm of the generator's gradient at the logged steps.
- ``d_gap``, ``grad_align``: see :mod:`benchmarks.gan.critic_probe`.

Rule (this project's, documented in the reports): a run is **collapsed** at an evaluation when
``top_class ≥ 0.8`` (≥ 80 % of samples in one class) or ``pixel_std < 0.1 ×`` the real images' per-pixel std.
"""

from __future__ import annotations

import statistics
from typing import Any, Optional

import torch
from torch import Tensor

TOP_CLASS_LIMIT = 0.8
PIXEL_STD_FRACTION = 0.1
RULE = (
    f"collapsed = at least {TOP_CLASS_LIMIT:.0%} of the samples in one class of the scoring classifier, or a "
    f"per-pixel std across samples below {PIXEL_STD_FRACTION:.0%} of the real images'"
)


class PixelMoments:
    """Running per-pixel sums (float64) over batches of images, for the per-pixel std across all samples."""

    def __init__(self) -> None:
        self.n, self.s1, self.s2 = 0, None, None  # type: ignore[assignment]

    def add(self, x01: Tensor) -> None:
        x = x01.detach().double().cpu()
        s1, s2 = x.sum(0), (x * x).sum(0)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += x.shape[0]

    def std(self) -> float:
        if self.n < 2 or self.s1 is None:
            return float("nan")
        var = (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1)
        return float(var.clamp_min(0).sqrt().mean())


def pixel_std(x01: Tensor) -> float:
    """Per-pixel std across the first axis of ``x01`` (N, C, H, W), averaged over pixels."""
    m = PixelMoments()
    m.add(x01)
    return m.std()


def top_class_fraction(logits: Tensor) -> float:
    """Fraction of rows whose argmax is the most frequent argmax."""
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1])
    return float(counts.max()) / max(1, logits.shape[0])


TRAINING_KEYS = ("sat_real", "sat_fake", "g_grad")


def mean_losses(losses: list[dict[str, Any]], after: int, upto: int) -> dict[str, Optional[float]]:
    """Mean logged ``d``/``g`` losses with ``after < step ≤ upto``, and the means of the training diagnostics
    (``TRAINING_KEYS``) for those the log entries carry."""
    window = [e for e in losses if after < e["step"] <= upto]
    if not window:
        return {"d_loss": None, "g_loss": None}
    out: dict[str, Optional[float]] = {
        "d_loss": statistics.fmean(e["d"] for e in window),
        "g_loss": statistics.fmean(e["g"] for e in window),
    }
    for key in TRAINING_KEYS:
        vals = [e[key] for e in window if e.get(key) is not None]
        if vals:
            out[key] = statistics.fmean(vals)
    return out


def is_collapsed(evaluation: dict[str, Any], real_pixel_std: Optional[float]) -> Optional[bool]:
    """The rule above on one evaluation's diagnostics; ``None`` when they were not measured."""
    top, std = evaluation.get("top_class"), evaluation.get("pixel_std")
    if top is None and std is None:
        return None
    by_class = top is not None and top >= TOP_CLASS_LIMIT
    by_std = std is not None and real_pixel_std is not None and std < PIXEL_STD_FRACTION * real_pixel_std
    return bool(by_class or by_std)
