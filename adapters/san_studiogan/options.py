"""SAN's YAML options in StudioGAN's style (``MODEL.apply_d_san``, ``MODEL.d_san_*``) and their checks.

StudioGAN's ``Configurations._overwrite_cfgs`` rejects any YAML key that ``load_base_cfgs`` did not
define; :data:`DEFAULTS` are registered there (by :mod:`san_studiogan.patch`) before the YAML is
read. ``"N/A"`` means "not set", as everywhere in StudioGAN.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from typing import Any, Optional

import torch

#: ``MODEL.<key>: default``; the order is the documentation order.
DEFAULTS: dict[str, Any] = {
    "apply_d_san": False,  # SAN on D instead of SN (D keeps apply_d_sn's architecture: no BatchNorm)
    "d_san_interval": 1,  # normalize after every N-th real D optimizer step
    "d_san_filter_ratio": 1.0,  # r: fraction of the m·n kernels evaluated per conv, in (0, 1]
    "d_san_gain": "N/A",  # g: "N/A" = Eq. 9's compensation gain (1 when r = 1)
    "d_san_stride_mode": "paper",  # "paper" (max |DFT| on the full grid) or "exact" (strided operator)
    "d_san_targets": "N/A",  # glob or list of globs on D's layer names; "N/A" = all conv/linear/embedding
    "d_san_exclude": "N/A",  # glob or list of globs to leave out
    "d_san_seed": "N/A",  # kernel-subset seed; "N/A" = RUN.seed (identical on every DDP rank)
    "d_san_circular_padding": True,  # D convs use circular padding (Lemma 1 is exact)
    "d_san_normalize_first": False,  # also normalize once before the first D step
    "d_san_form": "rescale",  # "rescale" (W <- W / c in place) or "reparametrize" (the authors' forward W / s)
    "d_san_sync_free": "N/A",  # "N/A" = on for CUDA weights; True / False (no host-device sync per step)
    "d_san_compile_step": False,  # torch.compile(fullgraph=True) of the sync-free step
    "d_san_cuda_graph": False,  # CUDA graph of the sync-free step (CUDA only)
}
FORMS = ("rescale", "reparametrize")
STRIDE_MODES = ("paper", "exact")
FORBIDDEN_BACKBONES = ("stylegan2", "stylegan3")


class SANConfigError(ValueError):
    """A SAN option (or its combination with other StudioGAN options) is invalid."""


def _is_san_key(key: Any) -> bool:
    return isinstance(key, str) and "san" in key.lower().split("_")


def check_yaml_keys(yaml_cfg: Any, cfg_file: str = "<yaml>") -> None:
    """Reject SAN-like keys that are unknown or outside ``MODEL`` (before StudioGAN's own strict check)."""
    if not isinstance(yaml_cfg, Mapping):
        return
    for section, values in yaml_cfg.items():
        if not isinstance(values, Mapping):
            continue
        for key in values:
            if not _is_san_key(key):
                continue
            if section != "MODEL":
                raise SANConfigError(
                    f"{cfg_file}: SAN options belong under MODEL, got {section}.{key}; move it to MODEL.{key}"
                )
            if key not in DEFAULTS:
                close = difflib.get_close_matches(key, list(DEFAULTS), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise SANConfigError(
                    f"{cfg_file}: unknown SAN option MODEL.{key}; {hint}expected one of {', '.join(DEFAULTS)}"
                )


def _patterns(key: str, value: Any) -> Optional[tuple[str, ...]]:
    if value == "N/A" or value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(p, str) and p for p in items):
        raise SANConfigError(f'MODEL.{key}: expected "N/A", a glob string or a list of glob strings, got {value!r}')
    return tuple(items)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class SANOptions:
    """Validated ``MODEL.d_san_*`` values (paper symbols: ``r`` = filter_ratio, ``g`` = gain).

    It travels inside ``cfgs.MODULES`` (as ``MODULES.d_san``) to StudioGAN's spawned DDP workers;
    unpickling it there re-applies :func:`san_studiogan.install` to the worker's StudioGAN modules
    named in ``host`` (``(config, models.model, sys.path entry, utils.ckpt or None, utils.misc or None)``).
    """

    interval: int = 1
    filter_ratio: float = 1.0
    gain: Optional[float] = None
    stride_mode: str = "paper"
    targets: Optional[tuple[str, ...]] = None
    exclude: Optional[tuple[str, ...]] = None
    seed: Optional[int] = None
    circular_padding: bool = True
    normalize_first: bool = False
    form: str = "rescale"
    sync_free: Optional[bool] = None
    compile_step: bool = False
    cuda_graph: bool = False
    host: Optional[tuple[str, str, str, Optional[str], Optional[str]]] = None

    def san_kwargs(self, run_seed: Any = None) -> dict[str, Any]:
        """Keyword arguments for :class:`san_core.SAN` (the seed falls back to ``RUN.seed``, then 0)."""
        seed = self.seed
        if seed is None:
            seed = run_seed if isinstance(run_seed, int) and not isinstance(run_seed, bool) and run_seed >= 0 else 0
        return {
            "exclude": list(self.exclude) if self.exclude else None,
            "interval": self.interval,
            "filter_ratio": self.filter_ratio,
            "gain": self.gain,
            "stride_mode": self.stride_mode,
            "seed": seed,
            "form": self.form,
            "sync_free": self.sync_free,
            "compile_step": self.compile_step,
            "cuda_graph": self.cuda_graph,
        }

    def __reduce__(self):  # re-installs the patches when a spawned worker unpickles cfgs
        from .patch import restore_options

        return restore_options, (dataclasses.asdict(self),)


def parse_options(MODEL: Any, LOSS: Any) -> Optional[SANOptions]:
    """Check ``MODEL.apply_d_san``/``d_san_*`` and their compatibility; ``None`` when SAN is off.

    Raises :class:`SANConfigError` naming the option, what was expected and what was given.
    """
    values = {key: getattr(MODEL, key, default) for key, default in DEFAULTS.items()}
    apply = values["apply_d_san"]
    if not isinstance(apply, bool):
        raise SANConfigError(f"MODEL.apply_d_san: expected True or False, got {apply!r}")
    if not apply:
        changed = [k for k, v in values.items() if k != "apply_d_san" and v != DEFAULTS[k]]
        if changed:
            raise SANConfigError(
                f"MODEL.{changed[0]} is set to {values[changed[0]]!r} but MODEL.apply_d_san is False; "
                "add 'apply_d_san: True' under MODEL or remove the d_san_* options"
            )
        return None
    backbone = getattr(MODEL, "backbone", None)
    if backbone in FORBIDDEN_BACKBONES:
        raise SANConfigError(
            f"MODEL.apply_d_san: True is not supported with MODEL.backbone {backbone!r}: StudioGAN's StyleGAN2/3 "
            "discriminator forbids spectral normalization and does not build its layers through MODULES.d_*; "
            "expected one of deep_conv, resnet, big_resnet, big_resnet_deep_legacy, big_resnet_deep_studiogan"
        )
    if getattr(MODEL, "apply_d_sn", False):
        raise SANConfigError(
            "MODEL.apply_d_san: True and MODEL.apply_d_sn: True normalize the same discriminator twice; "
            "SAN replaces SN: set apply_d_sn: False (D keeps apply_d_sn's architecture, without BatchNorm)"
        )
    if getattr(LOSS, "apply_wc", False):
        raise SANConfigError(
            "MODEL.apply_d_san: True with LOSS.apply_wc: True would clip the SAN-normalized weights of the same "
            "discriminator; expected LOSS.apply_wc: False"
        )
    interval, ratio, gain = values["d_san_interval"], values["d_san_filter_ratio"], values["d_san_gain"]
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise SANConfigError(f"MODEL.d_san_interval: expected an int >= 1, got {interval!r}")
    if not _number(ratio) or not 0 < ratio <= 1:
        raise SANConfigError(f"MODEL.d_san_filter_ratio: expected a number in (0, 1], got {ratio!r}")
    if gain != "N/A" and (not _number(gain) or gain <= 0):
        raise SANConfigError(f'MODEL.d_san_gain: expected "N/A" or a number > 0, got {gain!r}')
    stride_mode = values["d_san_stride_mode"]
    if stride_mode not in STRIDE_MODES:
        raise SANConfigError(f"MODEL.d_san_stride_mode: expected one of {STRIDE_MODES}, got {stride_mode!r}")
    seed = values["d_san_seed"]
    if seed != "N/A" and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SANConfigError(f'MODEL.d_san_seed: expected "N/A" or an int >= 0, got {seed!r}')
    for key in ("d_san_circular_padding", "d_san_normalize_first", "d_san_compile_step", "d_san_cuda_graph"):
        if not isinstance(values[key], bool):
            raise SANConfigError(f"MODEL.{key}: expected True or False, got {values[key]!r}")
    _check_sync_options(values)
    return SANOptions(
        interval=interval,
        filter_ratio=float(ratio),
        gain=None if gain == "N/A" else float(gain),
        stride_mode=stride_mode,
        targets=_patterns("d_san_targets", values["d_san_targets"]),
        exclude=_patterns("d_san_exclude", values["d_san_exclude"]),
        seed=None if seed == "N/A" else seed,
        circular_padding=values["d_san_circular_padding"],
        normalize_first=values["d_san_normalize_first"],
        form=values["d_san_form"],
        sync_free=None if values["d_san_sync_free"] == "N/A" else values["d_san_sync_free"],
        compile_step=values["d_san_compile_step"],
        cuda_graph=values["d_san_cuda_graph"],
    )


def _check_sync_options(values: Mapping[str, Any]) -> None:
    """``d_san_form``, ``d_san_sync_free`` and what ``d_san_compile_step``/``d_san_cuda_graph`` need."""
    if values["d_san_form"] not in FORMS:
        raise SANConfigError(f"MODEL.d_san_form: expected one of {FORMS}, got {values['d_san_form']!r}")
    sync_free = values["d_san_sync_free"]
    if sync_free != "N/A" and not isinstance(sync_free, bool):
        raise SANConfigError(f'MODEL.d_san_sync_free: expected "N/A", True or False, got {sync_free!r}')
    for key in ("d_san_compile_step", "d_san_cuda_graph"):
        if values[key] and sync_free is False:
            raise SANConfigError(f"MODEL.{key}: True compiles the sync-free step; expected d_san_sync_free "
                                 '"N/A" or True, got False')  # fmt: skip
    if values["d_san_cuda_graph"] and not torch.cuda.is_available():
        raise SANConfigError("MODEL.d_san_cuda_graph: True needs CUDA, but torch.cuda.is_available() is False")
