"""A user's BigGAN-PyTorch checkout: validate it, put it on ``sys.path``, import its flat modules.

BigGAN-PyTorch is not a package: ``train.py`` does ``import utils, layers, train_fns`` from its own
folder. Those generic names may clash with modules already imported from elsewhere, which is refused
with a clear error instead of silently using the wrong ``utils``.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Union

from .errors import SANBigGANError

#: Files every BigGAN-PyTorch checkout has at its root.
REQUIRED_FILES: tuple[str, ...] = ("train.py", "train_fns.py", "utils.py", "layers.py", "BigGAN.py", "losses.py")


class BigGANCheckout:
    """A validated checkout at ``root`` (raises :class:`SANBigGANError` if it is not one)."""

    def __init__(self, root: Union[str, Path]) -> None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise SANBigGANError(
                f"--biggan-root: expected a BigGAN-PyTorch checkout directory, got {str(root)!r} (no such directory)"
            )
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise SANBigGANError(
                f"--biggan-root: expected a BigGAN-PyTorch checkout ({', '.join(REQUIRED_FILES)}), got {str(path)!r} "
                f"missing {', '.join(missing)}"
            )
        if "SNConv2d" not in (path / "layers.py").read_text(errors="replace"):
            raise SANBigGANError(
                f"--biggan-root: expected {path / 'layers.py'} to define SNConv2d (BigGAN-PyTorch), it does not"
            )
        self.root = path.resolve()

    def __repr__(self) -> str:
        return f"BigGANCheckout({str(self.root)!r})"

    def owns(self, module: types.ModuleType) -> bool:
        """Whether ``module`` was loaded from this checkout."""
        file = getattr(module, "__file__", None)
        if not file:
            return False
        return Path(file).resolve().is_relative_to(self.root)

    def activate(self) -> None:
        """Put the checkout first on ``sys.path`` and apply the import fixes BigGAN needs on new stacks."""
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        from san_compat import ensure_numpy_aliases, ensure_torchvision_importable

        ensure_torchvision_importable()
        ensure_numpy_aliases()

    def import_module(self, name: str) -> types.ModuleType:
        """Import ``name`` from the checkout (refusing a same-named module imported from elsewhere)."""
        loaded = sys.modules.get(name)
        if loaded is not None and not self.owns(loaded):
            raise SANBigGANError(
                f"cannot import BigGAN's {name!r}: a different module of that name is already imported from "
                f"{getattr(loaded, '__file__', loaded)!r}; run in a fresh process"
            )
        if not (self.root / f"{name}.py").is_file() and not (self.root / name / "__init__.py").is_file():
            raise SANBigGANError(
                f"--model {name}: expected {self.root / (name + '.py')} in the checkout, it is not there"
            )
        self.activate()
        module = importlib.import_module(name)
        if not self.owns(module):
            raise SANBigGANError(f"imported {name!r} from {module.__file__!r}, expected it from {self.root}")
        return module

    def unload(self) -> list[str]:
        """Forget every module imported from the checkout and take it off ``sys.path`` (for tests)."""
        names = [n for n, m in list(sys.modules.items()) if isinstance(m, types.ModuleType) and self.owns(m)]
        for name in names:
            del sys.modules[name]
        while str(self.root) in sys.path:
            sys.path.remove(str(self.root))
        return names
