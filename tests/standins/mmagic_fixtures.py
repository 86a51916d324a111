"""Helpers for the MMagic adapter tests: tiny data sets from ../shared/data, tiny model overrides, a probe hook.

Nothing here replaces MMEngine or mmagic: the tests build real ``Runner``s from the shipped configs
and only shrink widths, data and iteration counts. ``SANTestProbeHook`` observes a run (it counts
real critic optimizer steps and checks the generator is changed only by its own optimizer) and
reseeds every RNG at each iteration, so a resumed run can be compared with an uninterrupted one.
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "mmagic"
DATA = Path(os.environ.get("SAN_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR_NPZ = DATA / "cifar10" / "cifar10_exact_subset.npz"
SR_TRAIN = DATA / "sr" / "train" / "CSun_Hays80"

SNGAN_CNN = CONFIGS / "sngan" / "san-sngan-standard-cnn_lr2e-4-b0.5-0.9-ndisc1-1xb64_cifar10-32x32.py"
SNGAN_CNN_SN = CONFIGS / "sngan" / "sngan-standard-cnn_lr2e-4-ndisc5-1xb64_cifar10-32x32.py"
SNGAN_RESNET = CONFIGS / "sngan_proj" / "san-sngan-proj_wReLUinplace_lr2e-4-b0.5-0.9-ndisc1-1xb64_cifar10-32x32.py"
BIGGAN = CONFIGS / "biggan" / "san-biggan_b0.5-0.999_2xb25-500kiters_cifar10-32x32.py"
ESRGAN = CONFIGS / "esrgan" / "san-esrgan_x4c64b23g32_b0.5-0.9_1xb16-400k_div2k.py"
SR_ADV1 = CONFIGS / "srgan_resnet" / "san-srgan_x4c64b16_adv1e-1_1xb32-400k_div2k.py"
SR_ADV2 = CONFIGS / "srgan_resnet" / "san-srgan_x4c64b16_adv1e-2_1xb32-400k_div2k.py"
GAN_CONFIGS = (SNGAN_CNN, SNGAN_RESNET, BIGGAN)
SR_CONFIGS = (ESRGAN, SR_ADV1, SR_ADV2)

#: Width overrides that keep each config's architecture but make CPU steps take milliseconds.
TINY: dict[Path, dict] = {
    SNGAN_CNN: dict(generator=dict(base_channels=8), discriminator=dict(base_channels=8)),
    SNGAN_CNN_SN: dict(generator=dict(base_channels=8), discriminator=dict(base_channels=8)),
    SNGAN_RESNET: dict(generator=dict(base_channels=16), discriminator=dict(base_channels=16)),
    BIGGAN: dict(generator=dict(base_channels=8), discriminator=dict(base_channels=8)),
    ESRGAN: dict(
        generator=dict(mid_channels=8, num_blocks=1, growth_channels=4, init_cfg=None),
        discriminator=dict(mid_channels=4),
        perceptual_loss=None,
    ),
    SR_ADV1: dict(
        init_cfg=None,
        generator=dict(mid_channels=8, num_blocks=1),
        discriminator=dict(mid_channels=4, max_channels=8),
        perceptual_loss=None,
    ),
}
TINY[SR_ADV2] = TINY[SR_ADV1]


def cifar_png_folder(root: Path, count: int = 16) -> Path:
    """``root/<class>/<i>.png`` from the byte-exact CIFAR-10 subset (a folder-per-class data set)."""
    import cv2

    data = np.load(CIFAR_NPZ)
    for i in range(count):
        folder = root / str(int(data["y_train"][i]))
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), data["x_train"][i][:, :, ::-1])
    return root


def sr_patch_folder(root: Path, count: int = 4, size: int = 128, scale: int = 4) -> Path:
    """``root/gt/*.png`` centre crops (size²) of sr/train and ``root/lq/*.png`` their bicubic ×1/scale versions."""
    import cv2

    (root / "gt").mkdir(parents=True, exist_ok=True)
    (root / "lq").mkdir(parents=True, exist_ok=True)
    for path in sorted(SR_TRAIN.glob("*.jpg"))[:count]:
        img = cv2.imread(str(path))
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        hr = np.ascontiguousarray(img[top : top + size, left : left + size])
        cv2.imwrite(str(root / "gt" / f"{path.stem}.png"), hr)
        lr = cv2.resize(hr, (size // scale, size // scale), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / "lq" / f"{path.stem}.png"), lr)
    return root


def _merge(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value


def tiny_cfg(config: Path, work_dir: Path, data: Path, *, iters: int, name: str, batch: int = 4) -> Any:
    """The shipped config with tiny widths, the tiny data set, no validation, and checkpoints off by default."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(config))
    model = cfg.model.to_dict()
    _merge(model, copy.deepcopy(TINY[config]))
    cfg.model = model
    dataset = cfg.train_dataloader.dataset
    if config in SR_CONFIGS:  # the config's pipeline minus random flips/transposes (resume must be reproducible)
        pipeline = [p for p in dataset.pipeline if p["type"] not in ("Flip", "RandomTransposeHW")]
        dataset = dict(type="BasicImageDataset", data_root=str(data), data_prefix=dict(img="lq", gt="gt"))
        dataset["pipeline"] = pipeline
    else:
        pipeline = [dict(type="LoadImageFromFile", key="gt"), dict(type="PackInputs")]
        dataset = dict(type="BasicConditionalDataset", data_root=str(data), pipeline=pipeline)
    cfg.train_dataloader = dict(
        batch_size=batch,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type="InfiniteSampler", shuffle=True, seed=7),
        dataset=dataset,
    )
    for phase in ("val", "test"):
        cfg[f"{phase}_dataloader"] = cfg[f"{phase}_cfg"] = cfg[f"{phase}_evaluator"] = None
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=10**9)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=10**9, by_epoch=False, save_optimizer=True)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1)
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0))
    cfg.randomness = dict(seed=11)
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type="SANTestProbeHook")]
    cfg.work_dir, cfg.experiment_name = str(work_dir), name
    cfg.load_from, cfg.resume = None, False
    return cfg


def register_probe() -> None:
    """Register :class:`SANTestProbeHook` in MMEngine's root HOOKS (idempotent)."""
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    class SANTestProbeHook(Hook):
        priority = "LOWEST"

        def __init__(self) -> None:
            self.d_steps = 0
            self.g_start: dict[str, torch.Tensor] = {}
            self.g_violations: list[str] = []
            self._g_snapshot: Optional[list[torch.Tensor]] = None

        def before_train(self, runner: Any) -> None:
            d_opt = runner.optim_wrapper["discriminator"].optimizer
            g_opt = runner.optim_wrapper["generator"].optimizer
            d_opt.register_step_post_hook(lambda *_: setattr(self, "d_steps", self.d_steps + 1))
            g_params = [p for group in g_opt.param_groups for p in group["params"]]
            self.g_start = {n: p.detach().clone() for n, p in runner.model.generator.named_parameters()}
            self._g_snapshot = [p.detach().clone() for p in g_params]

            def before_g_step(*_: Any) -> None:  # nothing but G's optimizer may change G between its steps
                assert self._g_snapshot is not None
                for i, (p, old) in enumerate(zip(g_params, self._g_snapshot)):
                    if not torch.equal(p.detach(), old):
                        self.g_violations.append(f"G param {i} changed outside G's optimizer at iter {runner.iter}")

            def after_g_step(*_: Any) -> None:
                self._g_snapshot = [p.detach().clone() for p in g_params]

            g_opt.register_step_pre_hook(before_g_step)
            g_opt.register_step_post_hook(after_g_step)

        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            seed = 1000 + runner.iter
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)

    HOOKS.register_module(name="SANTestProbeHook", module=SANTestProbeHook, force=True)


def hooks_of(runner: Any) -> tuple[Any, Any]:
    """(SANHook, SANTestProbeHook) of a runner."""
    san = next(h for h in runner.hooks if type(h).__name__ == "SANHook")
    probe = next(h for h in runner.hooks if type(h).__name__ == "SANTestProbeHook")
    return san, probe


def current_constants(san_hook: Any) -> dict[str, float]:
    """Each SAN layer's constant for its current weight, computed with san_core's own functions."""
    from san_core import conv_constant, linear_constant

    san = san_hook.san
    out = {}
    for name, layer in san.layers.items():
        weight = layer.weight.detach()
        if isinstance(layer, nn.modules.conv._ConvNd):
            value = conv_constant(
                weight,
                san.input_sizes[name],
                stride=layer.stride,
                dilation=layer.dilation,
                groups=layer.groups,
                transposed=isinstance(layer, nn.modules.conv._ConvTransposeNd),
                stride_mode=san.config["stride_mode"],
            )
        else:
            value = linear_constant(weight)
        out[name] = float(value)
    return out


def model_state(runner: Any) -> dict[str, torch.Tensor]:
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
