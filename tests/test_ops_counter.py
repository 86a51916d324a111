"""``benchmarks._critic_steps``'s op counts: kernel ops leave out exactly the aliasing metadata ops, and the
CUDA-shaped plans are the planner's CUDA choice (a larger per-stage cost: fewer pruning stages), not the CPU one."""

from __future__ import annotations

import torch

from benchmarks._critic_steps import OpCounter, count_ops, critic_module, cuda_shaped_ops, is_view
from san_core import SAN

aten = torch.ops.aten


def test_views_and_kernels_are_told_apart() -> None:
    views = [aten.view.default, aten.select.int, aten.split.Tensor, aten.unbind.int, aten.detach.default,
             aten.t.default, aten.expand.default, aten.diagonal.default, aten.slice.Tensor]  # fmt: skip
    kernels = [aten.mm.default, aten.add_.Tensor, aten.copy_.default, aten._foreach_div_.List, aten.topk.default,
               aten.hypot.default, aten.stack.default, aten.clone.default]  # fmt: skip
    assert all(is_view(f) for f in views)
    assert not any(is_view(f) for f in kernels)


def test_the_counter_counts_all_ops_and_kernel_ops() -> None:
    x = torch.randn(4, 6)
    counter = OpCounter()
    with counter:
        a, b = x.view(2, 12).t().split(1, dim=1)  # three views
        (a @ b.t()).add_(1)  # one more view, two kernels
    assert (counter.ops, counter.kernel_ops, counter.syncs) == (6, 2, 0)


def test_cuda_shaped_plans_are_the_planners_cuda_choice() -> None:
    device = torch.device("cpu")
    module, sizes = critic_module("sngan_cnn", device)
    san = SAN(module, input_sizes=sizes, sync_free=True)
    cpu = count_ops(san.normalize_)
    stages_cpu = sum(len(e.plan.stages) for e in san._engine.entries.values() if e.plan is not None)
    cuda = cuda_shaped_ops("sngan_cnn", device)
    assert cuda["syncs"] == cpu.syncs == 0
    assert cuda["ops"] < cpu.ops and cuda["kernel_ops"] < cpu.kernel_ops  # fewer stages (none, here)
    assert stages_cpu > 0
    again = cuda_shaped_ops("sngan_cnn", device)  # and the patch is undone: repeatable
    assert again == cuda and count_ops(san.normalize_).ops == cpu.ops
