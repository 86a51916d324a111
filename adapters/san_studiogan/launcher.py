"""``python -m san_studiogan --studiogan-root PATH [--dry-run] -- <src/main.py arguments>``.

Installs the SAN patches into the checkout's modules, then runs its ``src/main.py`` as ``__main__``
with the given arguments (``-t -cfg CONFIG.yaml -data DIR -save DIR ...``), exactly as
``python src/main.py ...`` would. DDP workers that ``main.py`` spawns re-apply the patches when
they unpickle the configuration. ``--dry-run`` (no GPU needed) reads the config, builds D on the
CPU and lists the layers SAN normalizes with their constants, then exits. Before StudioGAN is
imported, the launcher runs the shared compat step (:mod:`san_compat`: PyPI torchvision beside a CPU
torch, NumPy 2's removed aliases), as the SPADE and BigGAN launchers do.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Sequence
from typing import Optional

from san_compat import ensure_numpy_aliases, ensure_torchvision_importable

from .host import ENV_ROOT, import_studiogan, studiogan_src
from .options import SANConfigError
from .patch import install


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m san_studiogan",
        description="Run PyTorch-StudioGAN's src/main.py with SAN options (MODEL.apply_d_san, MODEL.d_san_*).",
        epilog="Example: python -m san_studiogan --studiogan-root ~/PyTorch-StudioGAN -- -t "
        "-cfg configs/studiogan/CIFAR10/SNGAN-SAN.yaml -data data/ -save runs/",
        allow_abbrev=False,
    )
    parser.add_argument("--studiogan-root", default=None, help=f"PyTorch-StudioGAN checkout (default: ${ENV_ROOT})")
    parser.add_argument("--dry-run", action="store_true", help="check the config, list SAN's layers (CPU), exit")
    return parser


def dry_run(main_args: Sequence[str]) -> str:
    """Build the config and D (CPU) like ``loader.py`` does and describe SAN; returns the report."""
    import config  # StudioGAN's, importable after import_studiogan()
    import models.model as model

    cfg_parser = argparse.ArgumentParser(add_help=False)
    cfg_parser.add_argument("-cfg", "--cfg_file", required=True)
    cfg_parser.add_argument("--seed", type=int, default=-1)
    known, _ = cfg_parser.parse_known_args(list(main_args))
    cfgs = config.Configurations(known.cfg_file)
    cfgs.update_cfgs({"mixed_precision": False, "seed": known.seed}, super="RUN")
    options = getattr(cfgs.MODULES, "d_san", None)
    if options is None:
        return f"{known.cfg_file}: MODEL.apply_d_san is False; SAN is off (nothing to check)"
    Gen, _, _, Dis, *_ = model.load_generator_discriminator(
        DATA=cfgs.DATA,
        OPTIMIZATION=cfgs.OPTIMIZATION,
        MODEL=cfgs.MODEL,
        STYLEGAN=cfgs.STYLEGAN,
        MODULES=cfgs.MODULES,
        RUN=cfgs.RUN,
        device="cpu",
        logger=None,
    )
    cfgs.define_optimizer(Gen, Dis)
    san = cfgs.OPTIMIZATION.d_san
    constants = san.constants()
    names = ("d_conv2d", "d_deconv2d", "d_linear", "d_embedding")
    slots = ", ".join(f"{s}={getattr(cfgs.MODULES, s).__name__}" for s in names)
    lines = [
        f"{known.cfg_file}: SAN on D ({cfgs.MODEL.backbone}), {len(san.layers)} layers, {san.config}",
        f"MODULES: {slots}; D built with apply_d_sn's architecture (no BatchNorm), cfgs.MODEL.apply_d_sn stays False",
    ]
    for row in san.describe():
        size = f" input {row['input_size']}" if row["input_size"] else ""
        constant = float(constants[row["name"]])
        lines.append(f"  {row['name']:<40} {row['type']:<16} {row['shape']!s:<22}{size}  constant {constant:.4f}")
    return "\n".join(lines)


def _error(err: BaseException) -> int:
    """One line on stderr, ``san_studiogan: error: <message>`` (without repeating the prefix); returns 2."""
    message = str(err)
    message = message[len("san_studiogan: ") :] if message.startswith("san_studiogan: ") else message
    print(f"san_studiogan: error: {message}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (2 with one line on stderr for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        ours, main_args = argv[:split], argv[split + 1 :]
        args = _parser().parse_args(ours)
    else:
        args, main_args = _parser().parse_known_args(argv)
    try:
        src = studiogan_src(args.studiogan_root)
    except FileNotFoundError as err:
        return _error(err)
    ensure_numpy_aliases()
    ensure_torchvision_importable()  # before StudioGAN's modules import torchvision
    install(*import_studiogan(src.parent))
    try:
        if args.dry_run:
            print(dry_run(main_args))
            return 0
        saved_argv, sys.argv = sys.argv, [str(src / "main.py"), *main_args]
        try:
            runpy.run_path(str(src / "main.py"), run_name="__main__")
        finally:
            sys.argv = saved_argv
    except SANConfigError as err:
        return _error(err)
    return 0
