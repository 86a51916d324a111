"""SAN for MMagic/MMEngine: a registered ``SANHook``, SAN configs' models and losses, and a train entry point.

Install with ``pip install "sparsity-aware-norm[mmagic]"``. In a config::

    custom_imports = dict(imports=['san_mmagic'], allow_failed_imports=False)
    custom_hooks = [dict(type='SANHook', module='discriminator')]

and train with ``python -m san_mmagic.train CONFIG`` (runs :func:`san_mmagic.compat.apply` before
anything imports torchvision/mmagic), or with mmagic's own ``tools/train.py`` on a stack that needs no
compat step. Importing this package runs the compat step too (each fix is a no-op where not needed).
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("mmengine") is None:
    raise ImportError(
        'san_mmagic needs MMEngine and MMagic, which are not installed: pip install "sparsity-aware-norm[mmagic]"'
    )

from . import compat

compat.apply()

from .class_sn import ClassSpectralNormRecord, class_spectral_norm_base, strip_class_spectral_norm_  # noqa: E402
from .hook import SANHook, find_submodule  # noqa: E402
from .models import SNGANStandardCNNDiscriminator, SNGANStandardCNNGenerator, SRCritic  # noqa: E402
from .perceptual import LocalVGGPerceptualLoss  # noqa: E402
from .weights import MissingWeightsError, check_local_weights  # noqa: E402

__all__ = [
    "ClassSpectralNormRecord",
    "LocalVGGPerceptualLoss",
    "MissingWeightsError",
    "SANHook",
    "SNGANStandardCNNDiscriminator",
    "SNGANStandardCNNGenerator",
    "SRCritic",
    "check_local_weights",
    "class_spectral_norm_base",
    "compat",
    "find_submodule",
    "strip_class_spectral_norm_",
]
