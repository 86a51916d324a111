"""Stage (b) of the GPU run: one critic update per treatment, interleaved, at each critic's real training batch
(SNGAN CNN and ResNet 64, SPADE 1, ESRGAN 16, Real-ESRGAN's U-Net 12 on 256×256), CUDA events on a GPU
(wall time on CPU), ratios to "none", peak extra memory per update (not in the smoke run: the CPU profiler is slow).

Reuses :func:`benchmarks.speed_side_by_side.bench_critic`; each critic is time-boxed and recorded as it
finishes, and a critic or a treatment that fails is recorded without stopping the others. On CUDA the list adds
``san-graph`` (``SAN(cuda_graph=True)``: the normalization as one graph replay). The U-Net is
:class:`~benchmarks.gan.critics_extra.UNetCritic` (torch only; the same layers and forward as BasicSR's, a test
checks), and is left out of the smoke run (one update on a CPU is seconds even at 64×64).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from .._report import error_line
from ..gan.critics_extra import UNetCritic
from ..gan.treatments import supports_form
from ..speed_side_by_side import bench_critic, verdicts

REAL_BATCH = {"sngan_cnn": 64, "resnet": 64, "spade": 1, "esrgan": 16, "unet": 12}
BUILD = {"unet": UNetCritic}  # never BasicSR's own module: the device machine has torch/numpy/scipy/matplotlib/tqdm
# Smoke (CPU): small batches; SPADE on a 64×128 map instead of 256×512 (its cost on CPU would be minutes).
SMOKE_BATCH = {"sngan_cnn": 2, "resnet": 1, "spade": 1, "esrgan": 1}
SMOKE_SHAPE = {"spade": (39, 32, 64)}


def treatments(device: torch.device) -> list[str]:
    """The compared treatments; on CUDA also SAN with its step replayed from a CUDA graph (``san-graph``)."""
    base = ["none", "sn", "gp", "san", "san-every100", "san-r25"]
    base = [*base, "san-reparam"] if supports_form() else base
    return [*base, "san-graph"] if device.type == "cuda" else base


def run(
    device: torch.device, smoke: bool, budget_s: float, rounds: int, record: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Time every critic within ``budget_s``; ``record(partial)`` after each one."""
    keys = treatments(device)
    out: dict[str, Any] = {
        "treatments": keys, "timer": "CUDA events" if device.type == "cuda" else "wall clock (CPU)", "critics": {},
        "note": "" if supports_form() else "SAN reparametrized skipped: this san_core.SAN has no form= option",
    }  # fmt: skip
    start = time.perf_counter()
    names = ["spade", "sngan_cnn", "esrgan", "resnet"] if smoke else list(REAL_BATCH)  # smoke: cheap ones first
    for i, name in enumerate(names):
        left = budget_s - (time.perf_counter() - start)
        if left <= 2:
            out["critics"][name] = {"status": "skipped: speed budget spent"}
            continue
        batch = SMOKE_BATCH[name] if smoke else REAL_BATCH[name]
        shape = SMOKE_SHAPE.get(name) if smoke else None
        deadline = time.perf_counter() + left / (len(names) - i)  # an equal share of what is left
        t0 = time.perf_counter()
        errors: dict[str, str] = {}  # a treatment that fails is recorded; the others are still timed
        try:
            res = bench_critic(name, device, batch, rounds, keys, shape=shape, deadline=deadline,
                               profile_memory=not smoke, build=BUILD.get(name), errors=errors)  # fmt: skip
            out["critics"][name] = {"status": "ok", "batch": batch, "shape": list(shape) if shape else None,
                                    "treatments": res, "verdicts": verdicts(res), "errors": errors}  # fmt: skip
        except Exception as err:  # recorded; the other critics still run
            out["critics"][name] = {"status": f"error: {error_line(err)}"}
        out["critics"][name]["seconds"] = round(time.perf_counter() - t0, 1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        record(out)
    return out
