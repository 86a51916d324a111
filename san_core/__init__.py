"""san_core: Sparsity Aware Normalization (SAN) for GAN critics, framework-agnostic (torch only).

The public surface below is what adapters may use.
"""

from ._dft import DEFAULT_MAX_MEMORY, clear_dft_cache
from .apply import apply_san
from .diagnostics import conv_frequency_matrices, conv_singular_value, kernel_fourier_maxima, sn_estimate
from .normalizer import SAN, unwrap_model
from .padding import PaddingRecord, to_circular_padding_
from .sparsity import ChannelSparsity, channel_sparsity, effective_density, gain_from_sparsity
from .spectral_norm import (
    SpectralNormRecord,
    convert_spectral_norm_state_dict,
    spectral_norm_style,
    strip_spectral_norm_,
    to_reparametrized_keys,
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
    "ChannelSparsity",
    "LayerReport",
    "PaddingRecord",
    "Report",
    "Selection",
    "SpectralNormRecord",
    "apply_san",
    "channel_sparsity",
    "clear_dft_cache",
    "compensation_gain",
    "conv_constant",
    "conv_frequency_matrices",
    "conv_singular_value",
    "convert_spectral_norm_state_dict",
    "dry_run",
    "effective_density",
    "gain_from_sparsity",
    "inspect_critic",
    "kernel_fourier_maxima",
    "linear_constant",
    "official_constant",
    "select_layers",
    "sn_estimate",
    "spectral_norm_style",
    "strip_spectral_norm_",
    "subset_size",
    "to_circular_padding_",
    "to_reparametrized_keys",
    "unwrap_model",
]
__version__ = "0.1.0"

# ``san_core.inspect`` is also a ``python -m`` entry point: importing it eagerly here would make runpy warn.
_INSPECT = ("inspect_critic", "Report", "LayerReport")


def __getattr__(name: str) -> object:
    if name in _INSPECT:
        from . import inspect as _inspect

        return getattr(_inspect, name)
    raise AttributeError(f"module 'san_core' has no attribute {name!r}")
