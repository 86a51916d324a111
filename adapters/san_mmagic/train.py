"""``python -m san_mmagic.train CONFIG [--work-dir DIR] [--resume [PATH]] [--amp] [--no-val] [--cfg-options K=V ...]``.

mmagic's ``tools/train.py`` with the compat step first (:func:`san_mmagic.compat.apply`, before
anything imports torchvision or mmagic) and up-front checks that stop with one line and exit status 2
before anything is built or written: the config file, ``--amp`` without a GPU, local weight files
(:func:`~san_mmagic.weights.check_local_weights`), local data roots
(:func:`~san_mmagic.local_data.check_local_data`), and Inception weights for FID/IS validation
(:func:`~san_mmagic.validation.check_inception`; ``--no-val`` trains without validation). Same flags as
mmagic's script (``--launcher``, ``--auto-scale-lr``, ``--local-rank`` too), except: ``--resume`` alone
resumes from the latest checkpoint in the work dir and ``--resume PATH`` from that file; ``--amp``
switches every optimizer wrapper to ``AmpOptimWrapper``. With ``--launcher pytorch`` and no GPU, the
run uses gloo on the CPU (:func:`san_mmagic.compat.allow_cpu_distributed`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import os.path as osp
import sys
from typing import Any, Optional, Sequence

PROG = "python -m san_mmagic.train"
HAVE_MMENGINE = importlib.util.find_spec("mmengine") is not None and importlib.util.find_spec("mmagic") is not None

if HAVE_MMENGINE:
    from . import compat

    compat.apply()

    from mmengine.config import Config, DictAction

    from .local_data import MissingDataError, check_local_data
    from .validation import MissingInceptionError, check_inception, disable_validation
    from .weights import MissingWeightsError, check_local_weights


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Train an MMagic config (with SAN)")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from PATH, or (no value) from the latest checkpoint in the work dir",
    )
    parser.add_argument(
        "--amp", action="store_true", default=False, help="enable automatic-mixed-precision training (needs a GPU)"
    )
    parser.add_argument(
        "--no-val",
        action="store_true",
        help="train without the validation loop (no FID/IS, so no Inception weights): for offline or short runs",
    )
    parser.add_argument("--auto-scale-lr", action="store_true", help="enable automatically scaling LR")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction if HAVE_MMENGINE else "extend",
        help="override settings of the config, key=value pairs (as in mmagic's tools/train.py)",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none", help="job launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def enable_amp(cfg: Config) -> None:
    """``AmpOptimWrapper`` with dynamic loss scale for the config's wrapper(s); raises on other wrapper types."""
    wrapper = cfg.optim_wrapper
    constructor = wrapper.get("constructor", "DefaultOptimWrapperConstructor")
    entries = (
        [wrapper]
        if constructor == "DefaultOptimWrapperConstructor"
        else [v for v in wrapper.values() if isinstance(v, dict) and "optimizer" in v]
    )
    for entry in entries:
        kind = entry.get("type", "OptimWrapper")
        if kind not in ("OptimWrapper", "AmpOptimWrapper"):
            raise ValueError(f"--amp: expected optimizer wrappers of type OptimWrapper, got {kind}")
        entry["type"] = "AmpOptimWrapper"
        entry.setdefault("loss_scale", "dynamic")


def build_config(args: argparse.Namespace) -> Config:
    """The config after the command line (work dir, AMP, validation, resume, overrides), as mmagic builds it."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        enable_amp(cfg)
    if getattr(args, "no_val", False):
        disable_validation(cfg)
    if args.auto_scale_lr:
        cfg.setdefault("auto_scale_lr", {})["enable"] = True
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def preflight(args: argparse.Namespace) -> Any:
    """The config, or a one-line message (str) saying what is missing; builds nothing, writes nothing."""
    if not osp.isfile(args.config):
        return f"config file not found: {args.config!r}"
    if args.amp:
        import torch

        if not torch.cuda.is_available():
            return "--amp needs a CUDA GPU (torch.cuda.is_available() is False here); drop --amp to train in float32"
    cfg = build_config(args)
    try:
        check_local_weights(cfg)
        check_local_data(cfg)
        check_inception(cfg)
    except (MissingWeightsError, MissingDataError, MissingInceptionError) as err:
        return str(err)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not HAVE_MMENGINE:
        from . import MISSING_MESSAGE

        return _fail(MISSING_MESSAGE)
    cfg = preflight(args)
    if isinstance(cfg, str):
        return _fail(cfg)
    if cfg.launcher != "none":
        compat.allow_cpu_distributed(cfg)
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner

    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
    except (MissingWeightsError, MissingDataError) as err:
        return _fail(str(err))
    except RuntimeError as err:
        if "Cannot Load Inception Model" not in str(err):
            raise
        return _fail(f"FID/IS validation could not load Inception ({err}); pass --no-val to train without validation")
    if is_main_process():
        print(f"san_mmagic.train: done; checkpoints and logs under {cfg.work_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
