"""SAN settings for SPADE (``--san-*`` flags), their parser, and the record written next to SPADE's ``opt.txt``.

Defaults are the paper's SPADE settings: SAN on the middle convs of the multiscale discriminator, a random
fraction ``r = 0.25`` of the ``m·n`` kernels with gain ``g = 1.3``, circular padding, Adam ``β1 = 0.5``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

import torch

from .errors import SanSpadeError

PAPER_FILTER_RATIO = 0.25
PAPER_GAIN = 1.3
PAPER_BETA1 = 0.5


@dataclass(frozen=True)
class SanSpadeOptions:
    """What the SPADE patch does to the discriminator D (G and E are never touched).

    Attributes:
        filter_ratio: ``r``, the fraction of kernels ``w_ij`` whose spectrum max is evaluated.
        gain: ``g``; ``None`` means Eq. 9's ``H(m·n)/H(⌈m·n·r⌉)``. Ignored (1) when ``r = 1``.
        include_first_last: also SAN the first and last conv of each sub-discriminator (plain in SPADE).
        drop_instance_norm: replace the parameter-free InstanceNorm after each SAN conv by ``nn.Identity``.
        circular_padding: switch the SAN convs to circular padding (Lemma 1 is exact under it).
        interval: normalize after every ``interval``-th real ``optimizer_D`` step.
        seed: seed of the kernel-subset generator.
        stride_mode: ``"paper"`` (full-resolution bound) or ``"exact"`` (see ``san_core.conv_constant``).
        exclude: glob patterns of D layer names to leave alone.
        beta1: Adam ``β1`` replacing SPADE's default (``None``: keep SPADE's).
        form: ``"rescale"`` (``W ← W / c`` in place) or ``"reparametrize"`` (the authors' forward ``W / s``).
        sync_free: ``None`` (auto: on for CUDA weights), ``True`` or ``False`` (``--san-sync-free auto|on|off``).
        compile_step, cuda_graph: ``torch.compile`` / CUDA-graph the sync-free step (see ``san_core.SAN``).
    """

    filter_ratio: float = PAPER_FILTER_RATIO
    gain: Optional[float] = PAPER_GAIN
    include_first_last: bool = False
    drop_instance_norm: bool = False
    circular_padding: bool = True
    interval: int = 1
    seed: int = 0
    stride_mode: str = "paper"
    exclude: tuple[str, ...] = field(default_factory=tuple)
    beta1: Optional[float] = PAPER_BETA1
    form: str = "rescale"
    sync_free: Optional[bool] = None
    compile_step: bool = False
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        r = self.filter_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise SanSpadeError(f"expected --san-filter-ratio in (0, 1], got {r!r}")
        g = self.gain
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g <= 0):
            raise SanSpadeError(f"expected --san-gain to be a finite number > 0 or 'eq9', got {g!r}")
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise SanSpadeError(f"expected --san-interval to be an int >= 1, got {self.interval!r}")
        if self.stride_mode not in ("paper", "exact"):
            raise SanSpadeError(f"expected --san-stride-mode 'paper' or 'exact', got {self.stride_mode!r}")
        b = self.beta1
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1):
            raise SanSpadeError(f"expected --san-beta1 in [0, 1) or 'keep', got {b!r}")
        self._check_sync_options()

    def _check_sync_options(self) -> None:
        if self.form not in FORMS:
            raise SanSpadeError(f"expected --san-form {' or '.join(FORMS)}, got {self.form!r}")
        if not isinstance(self.sync_free, (bool, type(None))):
            raise SanSpadeError(f"expected --san-sync-free auto, on or off, got {self.sync_free!r}")
        for flag, value in (("--san-compile", self.compile_step), ("--san-cuda-graph", self.cuda_graph)):
            if not isinstance(value, bool):
                raise SanSpadeError(f"expected {flag} to be on or off, got {value!r}")
            if value and self.sync_free is False:
                raise SanSpadeError(f"{flag} compiles the sync-free step; expected --san-sync-free auto or on, got off")
        if self.cuda_graph and not torch.cuda.is_available():
            raise SanSpadeError("--san-cuda-graph needs CUDA, but torch.cuda.is_available() is False")

    @property
    def effective_gain(self) -> Optional[float]:
        """``g`` as passed to SAN: 1 when ``r = 1``, else the set gain (``None`` = Eq. 9)."""
        return 1.0 if self.filter_ratio == 1 else self.gain

    def san_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``san_core.SAN``/``apply_san``."""
        return dict(
            filter_ratio=float(self.filter_ratio),
            gain=self.effective_gain,
            interval=self.interval,
            seed=self.seed,
            stride_mode=self.stride_mode,
            form=self.form,
            sync_free=self.sync_free,
            compile_step=self.compile_step,
            cuda_graph=self.cuda_graph,
        )

    def summary(self) -> str:
        g = self.effective_gain
        return (
            f"r={self.filter_ratio:g}, g={'Eq. 9' if g is None else f'{g:g}'}, every {self.interval} D step(s), "
            f"{'first/last convs included' if self.include_first_last else 'middle convs only'}, "
            f"{'circular' if self.circular_padding else 'original'} padding, "
            f"InstanceNorm {'dropped' if self.drop_instance_norm else 'kept'}, stride_mode={self.stride_mode}"
            + (f", form={self.form}" if self.form != "rescale" else "")
            + (f", sync_free={'on' if self.sync_free else 'off'}" if self.sync_free is not None else "")
            + (", compiled step" if self.compile_step else "")
            + (", CUDA graph" if self.cuda_graph else "")
        )


@dataclass(frozen=True)
class LauncherArgs:
    """Parsed launcher command line: our flags, then SPADE's own arguments after ``--``."""

    spade_root: Path
    script: str
    keep_cwd: bool
    san_off: bool
    options: SanSpadeOptions
    spade_args: list[str]


class _OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one :class:`SanSpadeError` line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments" in message:
            message += " (SAN options: " + ", ".join(_SAN_FLAGS) + "; SPADE's own options go after '--')"
        raise SanSpadeError(message)


_SAN_FLAGS = (
    "--san-filter-ratio",
    "--san-gain",
    "--san-include-first-last",
    "--san-drop-instancenorm",
    "--san-no-circular",
    "--san-interval",
    "--san-seed",
    "--san-stride-mode",
    "--san-exclude",
    "--san-beta1",
    "--san-form",
    "--san-sync-free",
    "--san-compile",
    "--san-cuda-graph",
    "--san-off",
)
FORMS = ("rescale", "reparametrize")
SYNC_FREE = {"auto": None, "on": True, "off": False}


def _build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="python -m san_spade",
        usage="python -m san_spade --spade-root PATH [SAN options] -- [train.py|test.py] <SPADE's own arguments>",
        description="Run NVlabs/SPADE's own train.py/test.py with SAN on the discriminator (checkout left unchanged).",
        allow_abbrev=False,
    )
    p.add_argument("--spade-root", required=True, type=Path, help="path to a checkout of NVlabs/SPADE")
    p.add_argument("--script", choices=("train.py", "test.py"), default=None, help="SPADE script (default train.py)")
    p.add_argument("--keep-cwd", action="store_true", help="do not chdir into the checkout (SPADE expects it)")
    p.add_argument("--san-off", action="store_true", help="run SPADE unchanged (SN baseline), no SAN, no β1 override")
    p.add_argument("--san-filter-ratio", type=float, default=PAPER_FILTER_RATIO, metavar="R", help="r (default 0.25)")
    p.add_argument("--san-gain", default=None, metavar="G|eq9", help="g when r < 1 (default 1.3; 'eq9': Eq. 9)")
    p.add_argument("--san-include-first-last", action="store_true", help="also SAN the first and last conv")
    p.add_argument("--san-drop-instancenorm", action="store_true", help="drop the InstanceNorm after SAN convs")
    p.add_argument("--san-no-circular", action="store_true", help="keep zero padding")
    p.add_argument("--san-interval", type=int, default=1, metavar="N", help="normalize every N D steps")
    p.add_argument("--san-seed", type=int, default=0, help="kernel-subset generator seed")
    p.add_argument("--san-stride-mode", choices=("paper", "exact"), default="paper")
    p.add_argument("--san-exclude", action="append", default=[], metavar="GLOB", help="D layer names to skip")
    p.add_argument("--san-beta1", default=str(PAPER_BETA1), metavar="B|keep", help="Adam β1 (default 0.5)")
    p.add_argument("--san-form", choices=FORMS, default="rescale", help="in-place rescale or the authors' W / s")
    p.add_argument("--san-sync-free", choices=tuple(SYNC_FREE), default="auto", help="auto: on for CUDA weights")
    p.add_argument("--san-compile", action="store_true", help="torch.compile(fullgraph=True) the sync-free step")
    p.add_argument("--san-cuda-graph", action="store_true", help="CUDA-graph the sync-free step (needs r = 1)")
    return p


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SanSpadeError(f"expected {flag} to be a number, got {text!r}") from None


def parse_launcher_args(argv: Sequence[str]) -> LauncherArgs:
    """Split ``argv`` at the first ``--``: ours before it (strictly parsed), SPADE's after it (untouched)."""
    argv = list(argv)
    ours, spade = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    ns = _build_parser().parse_args(ours)
    script = ns.script
    if spade and spade[0] in ("train.py", "test.py"):
        if script is not None and script != spade[0]:
            raise SanSpadeError(f"--script {script} contradicts {spade[0]!r} after '--'")
        script = spade.pop(0)
    gain: Optional[float]
    if ns.san_gain is None:
        gain = PAPER_GAIN
    elif ns.san_gain.lower() == "eq9":
        gain = None
    else:
        gain = _number(ns.san_gain, "--san-gain")
    beta1 = None if ns.san_beta1.lower() == "keep" else _number(ns.san_beta1, "--san-beta1")
    options = SanSpadeOptions(
        filter_ratio=ns.san_filter_ratio,
        gain=gain,
        include_first_last=ns.san_include_first_last,
        drop_instance_norm=ns.san_drop_instancenorm,
        circular_padding=not ns.san_no_circular,
        interval=ns.san_interval,
        seed=ns.san_seed,
        stride_mode=ns.san_stride_mode,
        exclude=tuple(ns.san_exclude),
        beta1=beta1,
        form=ns.san_form,
        sync_free=SYNC_FREE[ns.san_sync_free],
        compile_step=ns.san_compile,
        cuda_graph=ns.san_cuda_graph,
    )
    return LauncherArgs(ns.spade_root, script or "train.py", ns.keep_cwd, ns.san_off, options, spade)


def write_record(directory: Path, options: SanSpadeOptions, extra: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``san_opt.txt`` (SPADE's ``opt.txt`` style) and ``san_opt.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {**{f"san_{k}": v for k, v in asdict(options).items()}, "san_effective_gain": options.effective_gain}
    record.update(extra)
    defaults = {f"san_{k}": v for k, v in asdict(SanSpadeOptions()).items()}
    lines = ["----------------- SAN options (san_spade) ---------------"]
    for key, value in record.items():
        note = f"\t[default: {defaults[key]}]" if key in defaults and defaults[key] != value else ""
        lines.append(f"{key:>25}: {value!s:<30}{note}")
    lines.append("----------------- End -------------------")
    txt, js = directory / "san_opt.txt", directory / "san_opt.json"
    txt.write_text("\n".join(lines) + "\n")
    js.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return txt, js
