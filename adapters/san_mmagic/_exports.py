"""Everything ``san_mmagic`` exports, imported after the compat step (only when MMEngine and MMagic are installed)."""

from __future__ import annotations

from . import compat

compat.apply()

from .cifar10 import LocalCIFAR10  # noqa: E402
from .class_sn import ClassSpectralNormRecord, class_spectral_norm_base, strip_class_spectral_norm_  # noqa: E402
from .hook import SANHook, find_submodule  # noqa: E402
from .local_data import MissingDataError, check_local_data  # noqa: E402
from .models import SNGANStandardCNNDiscriminator, SNGANStandardCNNGenerator, SRCritic  # noqa: E402
from .perceptual import LocalVGGPerceptualLoss  # noqa: E402
from .weights import MissingWeightsError, check_local_weights  # noqa: E402

__all__ = [
    "ClassSpectralNormRecord",
    "LocalCIFAR10",
    "LocalVGGPerceptualLoss",
    "MissingDataError",
    "MissingWeightsError",
    "SANHook",
    "SNGANStandardCNNDiscriminator",
    "SNGANStandardCNNGenerator",
    "SRCritic",
    "check_local_data",
    "check_local_weights",
    "class_spectral_norm_base",
    "compat",
    "find_submodule",
    "strip_class_spectral_norm_",
]
