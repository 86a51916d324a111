"""Named budgets for ``python -m benchmarks.side_by_side --preset NAME``.

- ``test``: seconds; tiny widths, a few steps on whatever data is given (the tests use ``--data fake``).
- ``cpu-quick``: a smoke test of the whole pipeline on 2 CPU cores in ≤ 15 min, one seed: the paper's CNN
  (full width) with every treatment for 40 generator steps, a 6-step SN / SAN / SAN + sparsity gains run of the
  paper's ResNet, and a 6-step SN-vs-SAN run of the BigGAN-style conditional setup at width 64 (¼ of BigGAN's
  CIFAR width). Batch 16 instead of 64 to afford more steps; the numbers say how the first few dozen steps go,
  not where training ends. Measured: 380 s wall with 2 threads on an idle 2-core machine, 741 s of CPU time
  (so ≤ 15 min single-threaded too).
- ``gpu``: the paper's setups at full width, batch 64, 3 seeds, 50k generator steps per run (the paper trains
  200 epochs ≈ 156k steps; pass ``--steps 156250`` for that), every treatment plus each baseline's usual
  number of critic steps (SN with 5 for the SNGAN setups, 4 for BigGAN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .treatments import DEFAULT


@dataclass(frozen=True)
class SetupBudget:
    setup: str
    treatments: list[str]
    steps: int
    batch: int
    eval_every: int
    n_eval: int
    g_ch: Optional[int] = None
    d_ch: Optional[int] = None
    log_every: int = 10
    ckpt_every: int = 500


@dataclass(frozen=True)
class Preset:
    name: str
    budgets: list[SetupBudget]
    seeds: list[int] = field(default_factory=lambda: [0])
    ref_samples: int = 50_000
    eval_batch: int = 250
    is_splits: int = 1
    note: str = ""


_TINY = {"g_ch": 32, "d_ch": 8, "log_every": 1}
_TEST = [
    SetupBudget("cnn", [*DEFAULT, "sn:2"], steps=2, batch=4, eval_every=2, n_eval=32, **_TINY),
    SetupBudget("resnet", ["san"], steps=1, batch=4, eval_every=1, n_eval=32, **{**_TINY, "g_ch": 16}),
    SetupBudget("biggan", ["sn", "san"], steps=1, batch=4, eval_every=1, n_eval=32, **{**_TINY, "g_ch": 16}),
]
_CPU_QUICK = [
    SetupBudget("cnn", [*DEFAULT, "sn:5"], steps=40, batch=16, eval_every=10, n_eval=400, log_every=1),
    SetupBudget("resnet", ["sn", "san", "san-gains"], steps=6, batch=16, eval_every=3, n_eval=128, log_every=1),
    SetupBudget("biggan", ["sn", "san"], steps=6, batch=16, eval_every=3, n_eval=128, g_ch=64, d_ch=64, log_every=1),
]
_GPU = [  # SN vs SAN first: runs go in this order, so a partial budget answers the main question first
    SetupBudget(
        key,
        ["sn", "san", f"sn:{k}", "san-reparam", "san-every100", "san-r25", "san-gains", "gp", "none"],
        steps=50_000,
        batch=64,
        eval_every=2_500,
        n_eval=10_000,
        log_every=100,
    )
    for key, k in (("cnn", 5), ("resnet", 5), ("biggan", 4))
]

PRESETS = {
    "test": Preset(
        "test",
        _TEST,
        ref_samples=128,
        eval_batch=32,
        note="test preset: tiny widths and step counts; checks the pipeline only.",
    ),
    "cpu-quick": Preset(
        "cpu-quick",
        _CPU_QUICK,
        ref_samples=10_000,
        note=(
            "cpu-quick preset: a smoke test on 2 CPU cores. The paper's CNN and ResNet at full width but batch 16 "
            "(not 64), 40 (CNN) and 6 (ResNet) generator steps; the BigGAN-style conditional setup at width 64 (¼ of "
            "BigGAN's CIFAR width), 6 steps; 400/128 samples per evaluation, reference statistics from 10k training "
            "images. At this budget the scores measure the first few dozen steps only and the differences between "
            "treatments are not a ranking (see the README for how much they move between invocations)."
        ),
    ),
    "gpu": Preset(
        "gpu",
        _GPU,
        seeds=[0, 1, 2],
        eval_batch=500,
        is_splits=10,
        note=(
            "gpu preset: the paper's setups at full width, batch 64, 50k generator steps, 10k samples per "
            "evaluation (10 IS splits), reference statistics from all 50k training images, 3 seeds."
        ),
    ),
}
