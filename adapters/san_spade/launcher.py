"""``python -m san_spade --spade-root PATH [SAN options] -- [train.py|test.py] <SPADE's arguments>``.

Validates the checkout, puts it first on ``sys.path``, changes into it (SPADE resolves ``./checkpoints``
and ``./datasets`` from there), provides the ``sync_batchnorm`` fallback when it is missing, wraps SPADE's
functions (:mod:`san_spade.install`) and runs SPADE's own script unchanged as ``__main__``. SPADE's parser
sees only its own arguments (plus ``--beta1 0.5`` unless given or ``--san-beta1 keep``).
"""

from __future__ import annotations

import os
import runpy
import shlex
import sys
from typing import Optional, Sequence

from .checkout import (
    SYNC_BN_HOWTO,
    count_gpu_ids,
    has_sync_batchnorm,
    import_spade,
    install_sync_batchnorm_fallback,
    validate_checkout,
)
from .errors import SanSpadeError
from .options import parse_launcher_args


def _say(message: str) -> None:
    print(f"san_spade: {message}", flush=True)


def _given(spade_args: list[str], flag: str) -> Optional[str]:
    for i, arg in enumerate(spade_args):
        if arg == flag:
            return spade_args[i + 1] if i + 1 < len(spade_args) else ""
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the launcher; returns the exit status (2 with one ``san_spade: error:`` line on bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_launcher_args(argv)
        root = validate_checkout(args.spade_root)
        fallback = not has_sync_batchnorm(root)
        if fallback and count_gpu_ids(args.spade_args) > 1:
            raise SanSpadeError(
                f"{root}/models/networks/sync_batchnorm is missing and --gpu_ids asks for several GPUs; "
                + SYNC_BN_HOWTO
            )
        spade_args = list(args.spade_args)
        training = args.script == "train.py"
        beta1_note = "not applied"
        if training and not args.san_off:
            given = _given(spade_args, "--beta1")
            if given is not None:
                beta1_note = f"kept --beta1 {given} given to SPADE"
                _say(f"Adam beta1: keeping --beta1 {given} given to SPADE (SAN's default 0.5 not applied)")
            elif args.options.beta1 is not None:
                spade_args += ["--beta1", f"{args.options.beta1:g}"]
                beta1_note = f"--beta1 {args.options.beta1:g} added"
                _say(
                    f"Adam beta1 = {args.options.beta1:g} (the paper's SAN-SPADE setting), overriding SPADE's "
                    "default (0.0, or 0.5 with --no_TTUR); --san-beta1 keep keeps SPADE's"
                )

        from san_compat import ensure_torchvision_importable

        ensure_torchvision_importable()
        sys.path.insert(0, str(root))
        if not args.keep_cwd and os.getcwd() != str(root):
            _say(f"working directory: {root} (SPADE resolves relative paths such as ./checkpoints from there)")
            os.chdir(root)
        if fallback:
            install_sync_batchnorm_fallback()
            _say(
                "models/networks/sync_batchnorm is missing: using the single-process fallback "
                "(SynchronizedBatchNorm2d = torch.nn.BatchNorm2d, DataParallelWithCallback = torch.nn.DataParallel); "
                + SYNC_BN_HOWTO
            )
        modules = import_spade(root)
        if args.san_off:
            _say("--san-off: SPADE runs unchanged (spectral norm baseline)")
        elif training:
            from .install import install

            record = {
                "spade_root": str(root),
                "script": args.script,
                "sync_batchnorm": "fallback (single-process)" if fallback else "real",
                "beta1_override": beta1_note,
                "command": "python -m san_spade " + shlex.join(argv),
            }
            install(modules, args.options, record)
        else:
            _say(f"{args.script} builds no discriminator: SAN is not involved (generator loads unchanged)")
        sys.argv = [str(root / args.script), *spade_args]
        runpy.run_path(str(root / args.script), run_name="__main__")
    except SanSpadeError as err:
        print(f"san_spade: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0
