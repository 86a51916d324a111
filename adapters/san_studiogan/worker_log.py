"""SAN's per-layer constants in StudioGAN's own training log (its ``logger`` and its wandb run).

StudioGAN logs every ``RUN.print_freq`` steps from ``WORKER.log_train_statistics`` (rank 0), and logs
D's spectral norms there when ``apply_d_sn``. :func:`wrap_log_train_statistics` adds, after the
original, one line with each SAN layer's constant ‖W‖₀,∞ (convs) or σ₁ (linear/embedding) of the
last normalization, before its rescale, to ``self.logger``, and the same values to wandb as
``Dis_san/<layer>`` (like StudioGAN's ``Dis_<name>`` sigmas). The wrapper is installed when SAN is
attached (``Configurations.define_optimizer``), by then ``loader`` has imported StudioGAN's ``worker``.
Before that line it calls ``SAN.check()``, which raises the sync-free path's delayed NaN/Inf ``ValueError``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from san_core import SAN

__all__ = ["constants_line", "wrap_log_train_statistics"]


def constants_line(san: SAN, step: int) -> Optional[str]:
    """``"SAN constants of D (step N, before the last rescale): layer=1.0003, ..."`` or None before any step."""
    if not san.last_constants:
        return None
    parts = ", ".join(f"{name}={float(value):.4f}" for name, value in san.last_constants.items())
    return f"SAN constants of D (step {step}, before the last rescale): {parts}"


def wrap_log_train_statistics(original: Callable, wandb_module: Any = None) -> Callable:
    """``WORKER.log_train_statistics`` that also logs SAN's constants (when ``OPTIMIZATION.d_san`` exists)."""

    @functools.wraps(original)
    def log_train_statistics(self: Any, current_step: int, *args: Any, **kwargs: Any) -> Any:
        result = original(self, current_step, *args, **kwargs)
        san = getattr(getattr(self, "OPTIMIZATION", None), "d_san", None)
        if isinstance(san, SAN):
            san.check()  # the sync-free path's delayed NaN/Inf error (one host sync), every RUN.print_freq steps
            line = constants_line(san, current_step + 1)
            if line is not None and getattr(self, "logger", None) is not None:
                self.logger.info(line)
            if line is not None and wandb_module is not None and getattr(wandb_module, "run", None) is not None:
                values = {f"Dis_san/{n}": float(v) for n, v in san.last_constants.items()}
                wandb_module.log(values, step=getattr(self, "wandb_step", current_step + 1))
        return result

    return log_train_statistics
