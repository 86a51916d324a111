"""SAN for MMagic/MMEngine: a registered ``SANHook``, SAN configs' models, losses and data set, and a train entry point.

Install the tested stack (see the README): ``pip install -e ".[mmagic]" torch==2.13.0 torchvision==0.28.0``.
In a config::

    custom_imports = dict(imports=['san_mmagic'], allow_failed_imports=False)
    custom_hooks = [dict(type='SANHook', module='discriminator')]

and train with ``python -m san_mmagic.train CONFIG`` (runs :func:`san_mmagic.compat.apply` before
anything imports torchvision/mmagic), or with mmagic's own ``tools/train.py`` on a stack that needs no
compat step. Importing this package runs the compat step too (each fix is a no-op where not needed).
Without MMEngine/MMagic the package still imports (so ``python -m san_mmagic.train --help`` works), and
every name raises an ImportError giving the install command.
"""

from __future__ import annotations

import importlib.util
from typing import Any

#: The README's tested install command (torch and torchvision pinned together; plain ``pip install mmagic`` swaps
#: torch). tests/test_mmagic_missing.py checks that the README gives the same command.
INSTALL_COMMAND = 'pip install -e ".[mmagic]" torch==2.13.0 torchvision==0.28.0'
MISSING_MESSAGE = (
    "san_mmagic needs MMEngine and MMagic, which are not installed; install the tested stack from this repository's "
    f"root with: {INSTALL_COMMAND}   (or ./bootstrap.sh dev,mmagic; for your own CUDA build name that "
    "torch/torchvision pair instead)"
)
MISSING = [m for m in ("mmengine", "mmagic") if importlib.util.find_spec(m) is None]

if MISSING:

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(MISSING_MESSAGE)

else:
    from ._exports import *  # noqa: F403  (compat step first, then the registrations)
    from ._exports import __all__  # noqa: F401
