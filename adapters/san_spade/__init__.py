"""SAN for NVlabs/SPADE: discriminator patcher and launcher (``python -m san_spade``).

``patch_discriminator(netD, SanSpadeOptions())`` replaces spectral norm by SAN on the middle convs of an
already built SPADE discriminator (exact inverse: ``.remove()``); the launcher runs SPADE's own
``train.py`` with that patch applied at construction. SPADE itself is imported only by the launcher.
"""

from .errors import SanSpadeError
from .options import SanSpadeOptions
from .patch import SpadeSAN, active_sessions, patch_discriminator, session_for
from .plan import LayerPlan, plan_layers

__all__ = [
    "LayerPlan",
    "SanSpadeError",
    "SanSpadeOptions",
    "SpadeSAN",
    "active_sessions",
    "patch_discriminator",
    "plan_layers",
    "session_for",
]
