"""``python -m san_biggan --biggan-root PATH -- <train.py args> --D_param SAN [--san_* options]``.

Parses BigGAN's own command line (``utils.prepare_parser()``) after taking out the ``--san_*`` flags,
installs the construction-time swap when ``--D_param SAN``, makes ``utils.save_weights``/``load_weights``
save and restore SAN's state too (``D_san*.pth``, see :mod:`san_biggan.checkpoint`; ``--resume`` continues
bit-for-bit), calls ``SAN.check()`` in ``utils.get_SVs`` (BigGAN's SV log, :mod:`san_biggan.sv_log`), sets D's
Adam β1 to the paper's 0.5 unless ``--D_B1`` is given (and prints it), and calls
BigGAN-PyTorch's own ``train.run(config)``, unchanged. Everything installed is removed when it returns.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Optional

from . import checkpoint, sv_log
from .checkout import BigGANCheckout
from .construction import ConstructionPatch, install
from .errors import SANBigGANError
from .options import PAPER_D_BETA1, SAN_FLAGS, add_san_arguments, given_flags, options_from_namespaces

PROG = "python -m san_biggan"


class _Parser(argparse.ArgumentParser):
    """Raises :class:`SANBigGANError` (one line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise SANBigGANError(message)


def launcher_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Train BigGAN-PyTorch with a SAN discriminator: " + PROG + " --biggan-root PATH [--san_* ...] -- "
        "<train.py args> --D_param SAN [--san_* ...]",
    )
    parser.add_argument("--biggan-root", required=True, help="path of your ajbrock/BigGAN-PyTorch checkout")
    add_san_arguments(parser)
    return parser


@dataclass
class Prepared:
    """Everything :func:`main` needs to call ``train.run(config)``."""

    checkout: BigGANCheckout
    config: dict[str, Any]
    patch: Optional[ConstructionPatch]
    hooks: Optional[checkpoint.CheckpointHooks] = None
    sv_hook: Optional[sv_log.SVLogHook] = None

    def remove(self) -> None:
        """Undo what :func:`prepare` installed (the construction swap, the checkpoint and SV-log hooks)."""
        for installed in (self.patch, self.hooks, self.sv_hook):
            if installed is not None:
                installed.remove()


def split_train_args(train_args: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Take the ``--san_*`` flags out of the train.py arguments; an unknown ``--san*`` flag is an error."""
    parser = _Parser(prog=PROG, allow_abbrev=False, add_help=False)
    add_san_arguments(parser)
    ours, rest = parser.parse_known_args(list(train_args))
    unknown = [a.split("=", 1)[0] for a in rest if a.lower().startswith(("--san_", "--san-"))]
    if unknown:
        close = difflib.get_close_matches(unknown[0].replace("-", "_"), SAN_FLAGS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(SAN_FLAGS)}"
        raise SANBigGANError(f"unknown SAN option {unknown[0]!r}{hint}")
    return ours, rest


def prepare(argv: Sequence[str]) -> Prepared:
    """Validate everything and install the patch; no training starts (``train.run`` is not called)."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    before = launcher_parser().parse_args(argv[:cut])
    san_after, train_args = split_train_args(argv[cut + 1 :])
    checkout = BigGANCheckout(before.biggan_root)
    utils = checkout.import_module("utils")
    parser = utils.prepare_parser()
    parser.error = _Parser.error.__get__(parser)  # one-line errors from BigGAN's own parser too
    biggan_beta1 = parser.get_default("D_B1")
    parser.set_defaults(D_B1=None)
    config = vars(parser.parse_args(train_args))
    san_given = given_flags([before, san_after])
    if config.get("D_param") != "SAN":
        if san_given:
            raise SANBigGANError(
                f"{', '.join(san_given)} given but --D_param is {config.get('D_param')!r}; add --D_param SAN"
            )
        config["D_B1"] = biggan_beta1 if config["D_B1"] is None else config["D_B1"]
        print(f"san_biggan: --D_param {config.get('D_param')}: running BigGAN-PyTorch unchanged", flush=True)
        return Prepared(checkout, config, None)
    options = options_from_namespaces([before, san_after], default_seed=int(config.get("seed", 0)))
    model = checkout.import_module(str(config["model"]))
    hooks = checkpoint.install(utils)
    try:
        patch = install(model, options)
    except BaseException:
        hooks.remove()
        raise
    sv_hook = sv_log.install(utils)
    if config["D_B1"] is None:
        config["D_B1"] = PAPER_D_BETA1
        note = f"the paper's SAN setting; BigGAN's default is {biggan_beta1}; pass --D_B1 to choose"
    else:
        note = "given with --D_B1"
    print(f"san_biggan: D uses SAN ({model.__name__}.Discriminator), {options}", flush=True)
    print(f"san_biggan: Adam beta1 of D (--D_B1) = {config['D_B1']} ({note})", flush=True)
    return Prepared(checkout, config, patch, hooks, sv_hook)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run BigGAN-PyTorch's ``train.run``; bad input prints one ``san_biggan: error:`` line and returns 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args in ([], ["-h"], ["--help"]):
        launcher_parser().print_help()
        return 0 if args else 2
    prepared = None
    try:
        prepared = prepare(args)
        train = prepared.checkout.import_module("train")
        train.run(prepared.config)  # D is built (and patched) in here; its SAN errors are ours to report
    except SANBigGANError as err:
        print(f"san_biggan: error: {err}", file=sys.stderr)
        return 2
    finally:
        if prepared is not None:
            prepared.remove()
    return 0
