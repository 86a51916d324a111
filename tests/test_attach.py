"""``SAN.attach``: one normalization per real optimizer step, never for steps that did not happen.

Gradient accumulation (no ``step()``), a ``GradScaler`` skipping a step (plain, fused Adam, a
``found_inf`` step kwarg), an optimizer whose ``step`` calls a hooked parent ``step``, attaching
twice, re-attaching after ``handle.remove()`` and ``san.remove()``.
"""

from __future__ import annotations

import pytest
import torch
from _san_models import batch, constants_of, count_normalizations, critic, train_step
from torch import Tensor

from san_core import SAN


def assert_normalized(model: torch.nn.Module) -> None:
    for name, value in constants_of(model, (8, 8)).items():
        assert float(value) == pytest.approx(1.0, abs=1e-5), name


def test_attach_counts_real_steps_under_gradient_accumulation() -> None:
    model = critic()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    san = SAN(model, example_input=batch())
    done = count_normalizations(san)
    san.attach(opt)
    for micro in range(9):
        before = model.conv1.weight.detach().clone()
        train_step(model, micro)
        assert torch.equal(before, model.conv1.weight)  # backward alone never normalizes
        if micro % 3 == 2:
            opt.step()
            opt.zero_grad()
            assert_normalized(model)
    assert done == [1, 2, 3] and san.calls == 3


def test_attach_skips_steps_the_grad_scaler_skips() -> None:
    model = critic()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    san = SAN(model, example_input=batch())
    done = count_normalizations(san)
    san.attach(opt)
    for it in range(4):
        opt.zero_grad()
        scaler.scale(model(*batch(seed=it)).square().mean()).backward()
        if it == 1:
            model.head.weight.grad[0, 0] = float("inf")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        scaler.step(opt)
        scaler.update()
        unchanged = all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
        assert unchanged == (it == 1)
    assert scaler.get_scale() < 2.0**10  # the scaler did see the inf
    assert done == [1, 2, 3] and san.calls == 3


def test_attach_skips_grad_scaler_skipped_steps_of_fused_optimizers() -> None:
    """Fused Adam handles scaling itself: the scaler calls its ``step`` and marks a skip with ``found_inf``."""
    model = critic()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    assert getattr(opt, "_step_supports_amp_scaling", False)  # the path under test
    scaler = torch.amp.GradScaler("cpu")
    san = SAN(model, example_input=batch())
    done = count_normalizations(san)
    san.attach(opt)
    steps = []
    opt.register_step_post_hook(lambda *_: steps.append(1))
    for it in range(3):
        opt.zero_grad()
        scaler.scale(model(*batch(seed=it)).square().mean()).backward()
        if it == 1:
            model.head.weight.grad[0, 0] = float("nan")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        scaler.step(opt)
        scaler.update()
        unchanged = all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
        assert unchanged == (it == 1)
        assert not hasattr(opt, "found_inf")  # the scaler's mark is gone after each step
    assert len(steps) == 3  # step() did run on the skipped iteration too
    assert done == [1, 2] and san.calls == 2
    assert_normalized(model)


class FoundInfSGD(torch.optim.Optimizer):
    """Plain SGD whose ``step`` takes ``found_inf`` itself (the contract of amp-aware optimizers)."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None, found_inf: Tensor | None = None):  # type: ignore[override]
        if found_inf is not None and bool(found_inf):
            return None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
        return None


def test_attach_honours_a_found_inf_step_kwarg() -> None:
    model = critic()
    opt = FoundInfSGD(model.parameters(), lr=0.05)
    san = SAN(model, example_input=batch())
    done = count_normalizations(san)
    san.attach(opt)
    train_step(model, 0)
    opt.step(found_inf=torch.tensor(1.0))
    assert done == [] and san.calls == 0
    opt.step(found_inf=torch.tensor(0.0))
    opt.step()
    assert done == [1, 2]


class ClippedSGD(torch.optim.SGD):
    """SGD that clips gradients, then runs the parent's ``step`` (``super().step()``)."""

    def step(self, closure=None):  # type: ignore[override]
        params = [p for group in self.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        return super().step(closure)


def test_subclass_step_calling_a_hooked_parent_step_normalizes_once() -> None:
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # a plain SGD hooks SGD.step itself
    model = critic()
    opt = ClippedSGD(model.parameters(), lr=0.05)
    assert getattr(torch.optim.SGD.step, "hooked", False) and getattr(ClippedSGD.step, "hooked", False)
    entered: list[int] = []
    opt.register_step_pre_hook(lambda *_: entered.append(1))
    san = SAN(model, example_input=batch())
    done = count_normalizations(san)
    san.attach(opt)
    for it in range(3):
        opt.zero_grad()
        train_step(model, it)
        opt.step()
        assert len(entered) == 2 * (it + 1)  # both steps ran their hooks: the nesting is real
        assert_normalized(model)
    assert done == [1, 2, 3] and san.calls == 3


def test_a_step_that_raised_does_not_stop_later_normalizations() -> None:
    model = critic()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    san = SAN(model, example_input=batch())
    san.attach(opt)

    def failing_closure() -> Tensor:
        raise RuntimeError("closure failed")

    with pytest.raises(RuntimeError, match="closure failed"):
        opt.step(failing_closure)
    assert san.calls == 0
    train_step(model, 0)
    opt.step()
    assert san.calls == 1


def test_attach_twice_raises_and_handle_remove_stops_it() -> None:
    model = critic()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    san = SAN(model, example_input=batch())
    handle = san.attach(opt)
    with pytest.raises(RuntimeError, match=r"^SAN\.attach: this optimizer is already attached; remove its handle"):
        san.attach(opt)
    other = torch.optim.SGD(model.parameters(), lr=0.05)
    other_handle = san.attach(other)  # another optimizer is fine
    train_step(model, 0)
    opt.step()
    other.step()
    assert san.calls == 2
    handle.remove()
    other_handle.remove()
    opt.step()
    other.step()
    assert san.calls == 2
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    san.remove()


def test_attach_again_after_handle_remove() -> None:
    model = critic()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    san = SAN(model, example_input=batch())
    done = count_normalizations(san)
    san.attach(opt).remove()
    handle = san.attach(opt)
    with pytest.raises(RuntimeError, match="already attached"):  # the new attachment is live
        san.attach(opt)
    train_step(model, 0)
    opt.step()
    assert done == [1] and san.calls == 1  # once per step: the removed attachment left nothing behind
    handle.remove()
    opt.step()
    assert san.calls == 1


def test_san_remove_detaches_from_the_optimizer() -> None:
    model = critic()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    san = SAN(model, example_input=batch())
    san.attach(opt)
    assert san.remove() == ["conv1", "conv2", "head", "embed"]
    train_step(model, 0)
    opt.step()
    assert san.calls == 0
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert all(not m._forward_pre_hooks for m in model.modules())
