"""Fail early, in one line, when a config's local weight files are missing (instead of a URL/IO error deep in a run).

:func:`check_local_weights` walks a config and checks every local path that training will read:
``LocalVGGPerceptualLoss.vgg_path`` (unless ``random_init``), ``init_cfg=dict(type='Pretrained',
checkpoint=PATH)`` of any submodule (e.g. the PSNR-trained generator), and ``load_from``. URLs are
left alone (MMEngine downloads them). ``python -m san_mmagic.train`` runs it before building the
runner and ``SANHook.before_run`` runs it again (before weights are initialised), so mmagic's own
``tools/train.py`` fails early too.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    from typing import TypeGuard  # Python >= 3.10; annotations only (this module supports 3.9)

__all__ = ["MissingWeightsError", "check_local_weights"]

_REMOTE = ("http://", "https://", "s3://", "pavi://", "open-mmlab://", "openmmlab://", "torchvision://", "mmcls://")


#: the shipped configs' environment variable for each weight key (see configs/mmagic/README.md)
ENV_VARS = {
    "model.init_cfg.checkpoint": "SAN_PSNR_CHECKPOINT",
    "model.generator.init_cfg.checkpoint": "SAN_ESRGAN_PSNR_CHECKPOINT",
}


class MissingWeightsError(FileNotFoundError):
    """A weight file that training needs is not there; the message says which key to set."""


def _walk(node: Any, key: str) -> Iterator[tuple[str, Mapping]]:
    if isinstance(node, Mapping):
        yield key, node
        for k, v in node.items():
            yield from _walk(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f"{key}[{i}]")


def _is_local(path: Any) -> TypeGuard[str]:
    return isinstance(path, str) and bool(path) and not path.startswith(_REMOTE)


def check_local_weights(cfg: Mapping) -> None:
    """Raise :class:`MissingWeightsError` naming the first missing local weight file and its config key."""
    for key, node in _walk(cfg.get("model", {}), "model"):
        kind = str(node.get("type", "")).split(".")[-1].split("::")[-1]
        if kind == "LocalVGGPerceptualLoss" and not node.get("random_init", False):
            path = node.get("vgg_path")
            if not (_is_local(path) and os.path.isfile(path)):
                raise MissingWeightsError(
                    f"{key}.vgg_path: VGG19 weights not found ({path!r}); download "
                    "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth and set SAN_VGG19_PATH or "
                    f"--cfg-options {key}.vgg_path=PATH"
                )
        init = node.get("init_cfg")
        if isinstance(init, Mapping) and init.get("type") == "Pretrained":
            path = init.get("checkpoint")
            if _is_local(path) and not os.path.isfile(path):
                env = ENV_VARS.get(f"{key}.init_cfg.checkpoint")
                hint = f"set {env} (the shipped configs' variable) or" if env else "set"
                raise MissingWeightsError(
                    f"{key}.init_cfg.checkpoint: checkpoint not found ({path!r}); {hint} --cfg-options "
                    f"{key}.init_cfg.checkpoint=PATH"
                )
    load_from = cfg.get("load_from")
    if _is_local(load_from) and not os.path.isfile(load_from):
        raise MissingWeightsError(f"load_from: checkpoint not found ({load_from!r})")
