"""SAN for POSTECH-CVLab/PyTorch-StudioGAN: module builders, YAML options and launcher (``python -m san_studiogan``).

Add ``apply_d_san: True`` under ``MODEL:`` of a StudioGAN config (instead of ``apply_d_sn: True``)
and run ``python -m san_studiogan --studiogan-root PATH -- <src/main.py arguments>``. In your own
script, call :func:`install` after putting StudioGAN's ``src/`` on ``sys.path`` (or use
:func:`import_studiogan`) and before ``config.Configurations(...)`` is built. SAN's state is saved in
StudioGAN's D checkpoints and restored on resume (``-ckpt``; :mod:`san_studiogan.checkpoint`).
"""

from .builders import d_builders, san_conv2d, san_conv2d_zero_padding, san_deconv2d, san_embedding, san_linear
from .checkpoint import SAN_STATE_KEY, SANCheckpointWarning, restore_san_state
from .host import ENV_ROOT, import_studiogan, studiogan_src
from .options import DEFAULTS, SANConfigError, SANOptions, check_yaml_keys, parse_options
from .patch import attach_san, install, is_installed, uninstall

__all__ = [
    "DEFAULTS",
    "ENV_ROOT",
    "SAN_STATE_KEY",
    "SANCheckpointWarning",
    "SANConfigError",
    "SANOptions",
    "attach_san",
    "check_yaml_keys",
    "d_builders",
    "import_studiogan",
    "install",
    "is_installed",
    "parse_options",
    "restore_san_state",
    "san_conv2d",
    "san_conv2d_zero_padding",
    "san_deconv2d",
    "san_embedding",
    "san_linear",
    "studiogan_src",
    "uninstall",
]
