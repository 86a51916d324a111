"""Local paths of an option file: ``${VAR}`` expansion, and one line naming a missing file before training starts.

BasicSR's YAML has no variables; the shipped options write local paths as ``${SAN_DIV2K_ROOT}/...``.
:func:`resolve_paths` (run by the launcher right after BasicSR parses the options) expands them,
stops with one line when a variable is unset or a file/folder that training reads is missing
(``path.pretrain_network_g/d``, ``path.resume_state``, ``path.vgg19``, each dataset's ``dataroot_*`` and
``meta_info``/``meta_info_file``), and points BasicSR's VGG loader at ``path.vgg19``: BasicSR otherwise
reads ``experiments/pretrained_models/vgg19-dcbb9e9d.pth`` under the working directory and, when that is
missing, downloads torchvision's weights at run time, which we refuse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["MissingFileError", "resolve_paths"]

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class MissingFileError(FileNotFoundError):
    """A local file or folder (or the variable naming it) is missing; the message is one line naming it."""


def _expand(node: Any, key: str, sources: dict[str, list[str]]) -> Any:
    if isinstance(node, MutableMapping):
        for k in list(node):
            node[k] = _expand(node[k], f"{key}.{k}" if key else str(k), sources)
        return node
    if isinstance(node, list):
        return [_expand(v, f"{key}[{i}]", sources) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node
    names = [a or b for a, b in _VAR.findall(node)]
    for name in names:
        if name not in os.environ:
            raise MissingFileError(f"{key}: {node!r} needs the environment variable {name}, which is not set")
    sources[key] = names
    return os.path.expanduser(os.path.expandvars(node))


def _check(key: str, path: Any, sources: Mapping[str, list[str]], what: str = "file or folder") -> None:
    if path is None or os.path.exists(str(path)):
        return
    via = " (from " + ", ".join(f"${n}" for n in sources[key]) + ")" if key in sources else ""
    raise MissingFileError(f"{key}: {what} not found: {path}{via}")


def resolve_paths(opt: MutableMapping[str, Any]) -> None:
    """Expand ``${VAR}`` everywhere in ``opt`` (in place), check every local input, set BasicSR's VGG19 path."""
    sources: dict[str, list[str]] = {}
    _expand(opt, "", sources)
    paths = opt.get("path") or {}
    for name in ("pretrain_network_g", "pretrain_network_d", "resume_state", "vgg19"):
        _check(f"path.{name}", paths.get(name), sources, "file")
    for phase, dataset in (opt.get("datasets") or {}).items():
        if not isinstance(dataset, Mapping):
            continue
        for name in ("dataroot_gt", "dataroot_lq", "meta_info", "meta_info_file"):
            _check(f"datasets.{phase}.{name}", dataset.get(name), sources)
    percep = ((opt.get("train") or {}) if opt.get("is_train", True) else {}).get("perceptual_opt")
    if isinstance(percep, Mapping) and (percep.get("perceptual_weight", 1.0) or percep.get("style_weight", 0.0)):
        from basicsr.archs import vgg_arch

        if paths.get("vgg19"):
            vgg_arch.VGG_PRETRAIN_PATH = str(paths["vgg19"])
        elif not os.path.isfile(vgg_arch.VGG_PRETRAIN_PATH):
            raise MissingFileError(
                "train.perceptual_opt: VGG19 weights not found (BasicSR would download them); set path.vgg19 to a "
                "local https://download.pytorch.org/models/vgg19-dcbb9e9d.pth (the shipped options: $SAN_VGG19_PATH)"
            )
