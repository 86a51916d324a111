"""san_core: Sparsity Aware Normalization (SAN) for GAN critics, framework-agnostic (torch only).

The public surface below is what adapters may use.
"""

from ._dft import clear_dft_cache
from .spectrum import (
    compensation_gain,
    conv_constant,
    linear_constant,
    official_constant,
    subset_size,
)

__all__ = [
    "clear_dft_cache",
    "compensation_gain",
    "conv_constant",
    "linear_constant",
    "official_constant",
    "subset_size",
]
__version__ = "0.1.0"
