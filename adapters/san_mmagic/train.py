"""``python -m san_mmagic.train CONFIG [--work-dir DIR] [--resume [PATH]] [--amp] [--cfg-options K=V ...]``.

mmagic's ``tools/train.py`` with the compat step first (:func:`san_mmagic.compat.apply`, before
anything imports torchvision or mmagic) and a check that the config's local weight files exist
(one line and exit status 2 when not). Same flags as mmagic's script (``--launcher``,
``--auto-scale-lr``, ``--local-rank`` too), except: ``--resume`` alone resumes from the latest
checkpoint in the work dir and ``--resume PATH`` from that file; ``--amp`` switches every optimizer
wrapper of the config (one, or one per G/D entry) to ``AmpOptimWrapper`` (needs a GPU).
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

from . import compat

compat.apply()

from mmengine.config import Config, DictAction  # noqa: E402

from .weights import MissingWeightsError, check_local_weights  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m san_mmagic.train", description="Train an MMagic config (with SAN)")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from PATH, or (no value) from the latest checkpoint in the work dir",
    )
    parser.add_argument("--amp", action="store_true", default=False, help="enable automatic-mixed-precision training")
    parser.add_argument("--auto-scale-lr", action="store_true", help="enable automatically scaling LR")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
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
    """The config after the command line (work dir, AMP, resume, overrides), as mmagic's script builds it."""
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
    if args.auto_scale_lr:
        cfg.setdefault("auto_scale_lr", {})["enable"] = True
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    try:
        check_local_weights(cfg)
    except MissingWeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from mmengine.runner import Runner

    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
    except MissingWeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"san_mmagic.train: done; checkpoints and logs under {cfg.work_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
