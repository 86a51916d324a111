"""Helpers for the BasicSR adapter tests: a tiny paired SR data set, tiny option files, an independent FFT check.

Data: 4 aligned HR/LR crops (128×128 / 32×32, ×4) cut from Set5 in ``../shared/data/sr`` (``SAN_SHARED_DATA``
moves it). Where that folder is missing (e.g. a CI clone without ../shared), :func:`make_pairs` writes
SYNTHETIC images instead (smooth random colour fields, LR by area downsampling) and says so in its
return value; the adapter's behaviour under test does not depend on image content.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .fft_reference import one_sparse_gain  # noqa: F401  (re-exported: fx.one_sparse_gain)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SAN_SHARED_DATA", REPO.parent / "shared" / "data"))
SET5 = DATA / "sr" / "test" / "Set5"
GT_SIZE, SCALE = 128, 4


def make_pairs(root: Path, count: int = 4) -> str:
    """Write ``root/gt/NNN.png`` and ``root/lq/NNN.png``; returns ``"Set5"`` or ``"synthetic"`` (what was used)."""
    import cv2

    (root / "gt").mkdir(parents=True, exist_ok=True)
    (root / "lq").mkdir(parents=True, exist_ok=True)
    lq_size = GT_SIZE // SCALE
    sources = sorted(SET5.glob("img_*_SRF_4_HR.png"))[:count] if SET5.is_dir() else []
    for i in range(count):
        if sources:
            hr = cv2.imread(str(sources[i % len(sources)]), cv2.IMREAD_COLOR)
            lr = cv2.imread(str(sources[i % len(sources)]).replace("_HR.png", "_LR.png"), cv2.IMREAD_COLOR)
            top, left = (hr.shape[0] // 2 // SCALE) - lq_size // 2, (hr.shape[1] // 2 // SCALE) - lq_size // 2
            lq = lr[top : top + lq_size, left : left + lq_size]
            gt = hr[top * SCALE : (top + lq_size) * SCALE, left * SCALE : (left + lq_size) * SCALE]
        else:  # SYNTHETIC stand-in images (no ../shared/data here)
            rng = np.random.default_rng(i)
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            gt = cv2.resize(coarse, (GT_SIZE, GT_SIZE), interpolation=cv2.INTER_CUBIC)
            lq = cv2.resize(gt, (lq_size, lq_size), interpolation=cv2.INTER_AREA)
        assert gt.shape == (GT_SIZE, GT_SIZE, 3) and lq.shape == (lq_size, lq_size, 3)
        cv2.imwrite(str(root / "gt" / f"{i:03d}.png"), gt)
        cv2.imwrite(str(root / "lq" / f"{i:03d}.png"), lq)
    return "Set5" if sources else "synthetic"


def options(
    data: Path,
    *,
    name: str,
    model_type: str,
    network_d: dict[str, Any],
    total_iter: int = 3,
    save_freq: int = 1000,
    print_freq: int = 1,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A tiny BasicSR training option dict on CPU (``num_gpu: 0``): RRDBNet with 8 features and 1 block, batch 2.

    The perceptual loss is OFF (it needs VGG19 weights, which are not available here); pixel and GAN
    losses are the upstream options' (L1, vanilla GAN).
    """
    opt: dict[str, Any] = {
        "name": name,
        "model_type": model_type,
        "scale": SCALE,
        "num_gpu": 0,
        "manual_seed": 0,
        "datasets": {
            "train": {
                "name": "tiny",
                "type": "PairedImageDataset",
                "dataroot_gt": str(data / "gt"),
                "dataroot_lq": str(data / "lq"),
                "filename_tmpl": "{}",
                "io_backend": {"type": "disk"},
                "gt_size": GT_SIZE,
                "use_hflip": True,
                "use_rot": False,
                "use_shuffle": True,
                "num_worker_per_gpu": 0,
                "batch_size_per_gpu": 2,
                "dataset_enlarge_ratio": 1,
                "prefetch_mode": None,
            }
        },
        "network_g": {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1,
                      "num_grow_ch": 4},
        "network_d": network_d,
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0.999,
            "optim_g": {"type": "Adam", "lr": 1e-4, "weight_decay": 0, "betas": [0.5, 0.9]},
            "optim_d": {"type": "Adam", "lr": 1e-4, "weight_decay": 0, "betas": [0.5, 0.9]},
            "scheduler": {"type": "MultiStepLR", "milestones": [2], "gamma": 0.5},
            "total_iter": total_iter,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1e-2, "reduction": "mean"},
            "gan_opt": {"type": "GANLoss", "gan_type": "vanilla", "real_label_val": 1.0, "fake_label_val": 0.0,
                        "loss_weight": 1e-1},
            "net_d_iters": 1,
            "net_d_init_iters": 0,
        },
        "logger": {"print_freq": print_freq, "save_checkpoint_freq": save_freq, "use_tb_logger": False,
                   "wandb": {"project": None, "resume_id": None}},
    }  # fmt: skip
    opt.update(extra or {})
    return opt


def write_yaml(path: Path, opt: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path
