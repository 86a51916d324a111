"""``SAN.check()`` at BigGAN's singular-value logging: ``utils.get_SVs`` wrapped for a SAN D.

BigGAN's ``train.py`` logs ``utils.get_SVs(D, 'D')`` every ``--sv_log_interval`` iterations; for a SAN D
those are the ``sv0`` buffers holding SAN's last constants. With the sync-free path (``--san_sync_free``,
the default on CUDA) a NaN/Inf weight or constant leaves that layer unchanged on the device and is only
reported later: the wrapper calls ``D.san.san.check()`` (one host sync) before reading the buffers, so
the ``ValueError`` naming the layers stops training at the next SV log. The checkout is not edited.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .checkpoint import san_of

_MARK = "__san_biggan_sv_original__"


@dataclass
class SVLogHook:
    """The wrapped ``utils.get_SVs`` (``original`` is None when the checkout has none); :meth:`remove` undoes it."""

    utils: types.ModuleType
    original: Optional[Callable[..., Any]]

    def remove(self) -> None:
        if self.original is not None and getattr(getattr(self.utils, "get_SVs", None), _MARK, None) is self.original:
            self.utils.get_SVs = self.original  # type: ignore[attr-defined]  # upstream utils module, unseen by mypy


def install(utils: types.ModuleType) -> SVLogHook:
    """Wrap ``utils.get_SVs`` (if the checkout defines it) so it calls ``SAN.check()`` for a SAN D first."""
    original = getattr(utils, "get_SVs", None)
    if not callable(original) or getattr(original, _MARK, None) is not None:
        return SVLogHook(utils, None)

    @functools.wraps(original)
    def get_SVs(net: Any, prefix: Any, *args: Any, **kwargs: Any) -> Any:
        san = san_of(net)
        if san is not None:
            san.san.check()
        return original(net, prefix, *args, **kwargs)

    setattr(get_SVs, _MARK, original)
    utils.get_SVs = get_SVs  # type: ignore[attr-defined]  # upstream utils module, unseen by mypy
    return SVLogHook(utils, original)
