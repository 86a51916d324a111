"""The compat step for the pinned BasicSR stack; run it before torchvision or basicsr is imported.

Each fix checks whether it is needed and does nothing otherwise, so :func:`apply` is safe on any stack
(``import san_basicsr`` and the launchers call it first):

1. PyPI's torchvision beside a CPU/local torch fails at import on ``torchvision::nms``
   (:func:`san_compat.ensure_torchvision_importable`, shared with the MMagic adapter).
2. BasicSR 1.4.2 imports ``torchvision.transforms.functional_tensor`` (in ``basicsr/data/degradations.py``),
   a module torchvision renamed to ``_functional_tensor`` in 0.17 and then removed under the old name.
   :func:`alias_functional_tensor` registers the renamed module under the old name (the same module
   object, nothing copied), the fix users otherwise apply by editing BasicSR's source.
3. NumPy 2 removed ``np.bool8`` and friends (:func:`san_compat.ensure_numpy_aliases`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from san_compat import ensure_numpy_aliases, ensure_torchvision_importable

__all__ = ["OLD_NAME", "alias_functional_tensor", "apply"]

OLD_NAME = "torchvision.transforms.functional_tensor"
_NEW_NAME = "torchvision.transforms._functional_tensor"


def alias_functional_tensor() -> bool:
    """Make ``import torchvision.transforms.functional_tensor`` work where torchvision removed it; True if added."""
    if OLD_NAME in sys.modules or importlib.util.find_spec("torchvision") is None:
        return False
    try:
        if importlib.util.find_spec(OLD_NAME) is not None:
            return False  # torchvision < 0.17 still ships it
    except (ImportError, ValueError):
        pass
    if importlib.util.find_spec(_NEW_NAME) is None:
        return False  # neither name: nothing we can alias (BasicSR's import will say so)
    sys.modules[OLD_NAME] = importlib.import_module(_NEW_NAME)
    return True


def apply() -> dict[str, bool]:
    """Run every fix in order (before torchvision/basicsr are imported); returns ``{fix: applied}``."""
    return {
        "numpy_aliases": ensure_numpy_aliases(),
        "torchvision": ensure_torchvision_importable(),
        "functional_tensor": alias_functional_tensor(),
    }
