"""SAN for BasicSR and Real-ESRGAN: SAN discriminators in ``ARCH_REGISTRY`` and a launcher.

Install with ``pip install "sparsity-aware-norm[basicsr]"``. In a BasicSR option file, replace the
discriminator by its SAN version (same arguments, plus an optional ``san:`` block)::

    network_d:
      type: UNetDiscriminatorSAN   # or VGGStyleDiscriminatorSAN, SRCriticSAN
      num_in_ch: 3
      num_feat: 64
      skip_connection: true
      san: {filter_ratio: 1.0}

and train with ``python -m san_basicsr -opt options.yml`` (``python -m san_basicsr.train_realesrgan``
for Real-ESRGAN). Importing this package runs the compat step (:mod:`san_basicsr.compat`, each fix a
no-op where not needed) and registers the archs; :func:`install` wires SAN into ``basicsr.train``.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("basicsr") is None:
    raise ImportError('san_basicsr needs BasicSR, which is not installed: pip install "sparsity-aware-norm[basicsr]"')

from . import compat

compat.apply()

from .archs import SAN_ARCHS, SRCriticSAN, UNetDiscriminatorSAN, VGGStyleDiscriminatorSAN  # noqa: E402
from .checkpoint import convert_spectral_norm_on_load, restore_state, san_path, save_state  # noqa: E402
from .options import SANOptionError, SANOptions, parse_san_block  # noqa: E402
from .patch import SANBinding, attach_to_model, install, is_installed, uninstall  # noqa: E402
from .paths import MissingFileError, resolve_paths  # noqa: E402

__all__ = [
    "SAN_ARCHS",
    "MissingFileError",
    "SANBinding",
    "SANOptionError",
    "SANOptions",
    "SRCriticSAN",
    "UNetDiscriminatorSAN",
    "VGGStyleDiscriminatorSAN",
    "attach_to_model",
    "compat",
    "convert_spectral_norm_on_load",
    "install",
    "is_installed",
    "parse_san_block",
    "resolve_paths",
    "restore_state",
    "san_path",
    "save_state",
    "uninstall",
]
