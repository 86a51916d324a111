"""Same kernel subset on every DDP rank: the subset generator is seeded from the user's seed.

Two CPU processes (gloo) train the same-seeded critic on different data under
``DistributedDataParallel`` with ``filter_ratio=0.25``; after every optimizer step (and its SAN
normalization) both ranks must hold identical weights. A control run seeds SAN differently per rank
and must diverge, which shows the comparison can fail.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from san_core import apply_san, unwrap_model

WORLD = 2
STEPS = 3


def _critic() -> nn.Module:
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(16, 16, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 1),
    )


def _train(rank: int, san_seed: int) -> list[dict[str, torch.Tensor]]:
    """Three DDP steps with SAN attached; the weights after each step."""
    ddp = nn.parallel.DistributedDataParallel(_critic())
    data = torch.Generator().manual_seed(1000 + rank)  # different data per rank
    x = torch.randn(4, 3, 8, 8, generator=data)
    san = apply_san(unwrap_model(ddp), filter_ratio=0.25, seed=san_seed, example_input=x)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    san.attach(opt)
    history = []
    for _ in range(STEPS):
        opt.zero_grad()
        ddp(torch.randn(4, 3, 8, 8, generator=data)).square().mean().backward()
        opt.step()
        history.append({k: v.detach().clone() for k, v in unwrap_model(ddp).state_dict().items()})
    assert san.calls == STEPS
    san.remove()
    return history


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        same = _train(rank, san_seed=1234)
        control = _train(rank, san_seed=rank)  # deliberately different subsets per rank
        torch.save({"same": same, "control": control}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed/gloo missing")
@pytest.mark.skipif(sys.platform == "win32", reason="file:// rendezvous paths differ on Windows")
def test_ranks_keep_identical_weights(tmp_path: Path) -> None:
    # fork (where available) spares each rank a fresh `import torch`; building an optimizer here first
    # makes the ranks inherit what torch.optim imports lazily on first use (seconds per process)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    mp.start_processes(
        _worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True, start_method=method
    )
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))
    for step, (w0, w1) in enumerate(zip(rank0["same"], rank1["same"])):
        assert list(w0) == list(w1)
        for key in w0:
            assert torch.equal(w0[key], w1[key]), f"step {step}: {key} differs between ranks"
    assert len(rank0["same"]) == STEPS
    # control: different per-rank seeds give different subsets, hence different conv weights
    first0, first1 = rank0["control"][0], rank1["control"][0]
    assert not torch.equal(first0["0.weight"], first1["0.weight"])
    # the shared-seed run really trained and normalized (weights moved from the initialization)
    assert not torch.equal(rank0["same"][0]["0.weight"], _critic().state_dict()["0.weight"])
