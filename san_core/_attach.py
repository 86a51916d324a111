"""Run a callback once after every *real* ``optimizer.step()`` (the wiring behind :meth:`SAN.attach`)."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any, Callable, Optional

import torch


def _step_was_skipped(optimizer: torch.optim.Optimizer, kwargs: Optional[dict]) -> bool:
    """Did a GradScaler mark this (already executed) step as skipped? Only optimizers that handle
    scaling themselves (``_step_supports_amp_scaling``) are stepped on inf/NaN gradients at all."""
    kwargs = kwargs or {}
    found_inf = kwargs.get("found_inf", getattr(optimizer, "found_inf", None))
    scaler = kwargs.get("grad_scaler")
    if found_inf is None and scaler is not None:
        per_device = scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"]
        found_inf = sum(v.item() for v in per_device.values())
    return found_inf is not None and bool(found_inf)


class AttachHandle:
    """Returned by :meth:`SAN.attach`; ``remove()`` detaches SAN from the optimizer."""

    def __init__(self, optimizer: torch.optim.Optimizer, *handles: Any) -> None:
        self.optimizer = optimizer
        self._handles = handles
        self.active = True

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.active = False


def attach_after_real_steps(optimizer: torch.optim.Optimizer, callback: Callable[[], Any]) -> AttachHandle:
    """Call ``callback()`` after each real ``optimizer.step()``: not after a step a ``GradScaler`` skipped (or
    marked skipped), and once only for a ``step`` that calls a hooked parent ``step`` (``super().step()``)."""
    # The frames of the hooked ``step`` wrappers in progress. A step only counts when its post-hook
    # finds no enclosing step still running; wrappers of steps that raised are not on the stack any
    # more and are dropped at the next step.
    running: list[FrameType] = []

    def before_step(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        wrapper = sys._getframe(1)
        on_stack = set()
        frame: Optional[FrameType] = wrapper
        while frame is not None:
            on_stack.add(id(frame))
            frame = frame.f_back
        running[:] = [f for f in running if id(f) in on_stack]
        running.append(wrapper)

    def after_step(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        wrapper = sys._getframe(1)
        running[:] = [f for f in running if f is not wrapper]
        if not running and not _step_was_skipped(opt, kwargs):
            callback()

    return AttachHandle(
        optimizer, optimizer.register_step_pre_hook(before_step), optimizer.register_step_post_hook(after_step)
    )
