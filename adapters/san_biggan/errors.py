"""The one error type the adapter raises for bad input (a ``ValueError``, so callers may catch either)."""

from __future__ import annotations


class SANBigGANError(ValueError):
    """Bad input to the BigGAN adapter: the message names what was expected and what was found."""
