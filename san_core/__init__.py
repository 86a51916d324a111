"""san_core: Sparsity Aware Normalization (SAN) for GAN critics, framework-agnostic (torch only).

The public surface below is what adapters may use.
"""

from ._dft import DEFAULT_MAX_MEMORY, clear_dft_cache
from .normalizer import SAN, apply_san, unwrap_model
from .padding import PaddingRecord, to_circular_padding_
from .spectral_norm import (
    SpectralNormRecord,
    convert_spectral_norm_state_dict,
    spectral_norm_style,
    strip_spectral_norm_,
)
from .spectrum import (
    compensation_gain,
    conv_constant,
    linear_constant,
    official_constant,
    subset_size,
)
from .targets import Selection, dry_run, select_layers

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "SAN",
    "PaddingRecord",
    "Selection",
    "SpectralNormRecord",
    "apply_san",
    "clear_dft_cache",
    "compensation_gain",
    "conv_constant",
    "convert_spectral_norm_state_dict",
    "dry_run",
    "linear_constant",
    "official_constant",
    "select_layers",
    "spectral_norm_style",
    "strip_spectral_norm_",
    "subset_size",
    "to_circular_padding_",
    "unwrap_model",
]
__version__ = "0.1.0"
