"""The one error type the SPADE adapter raises for bad input (printed as one line by the launcher)."""

from __future__ import annotations


class SanSpadeError(ValueError):
    """Bad input to the SPADE adapter: a wrong checkout, an unknown option, a D with nothing to patch...

    Raised before anything is changed; the launcher prints ``san_spade: error: <message>`` and exits 2.
    """
