"""``python -m benchmarks.gpu diagnose``: issue 12's second GPU run — *why* does SAN collapse?

The quality stage of :mod:`.quality` (SNGAN standard CNN, CIFAR-10, batch 64, Adam 2e-4 β = (0.5, 0.9), the
concurrent workers, evaluations every ``eval_every`` G steps on ``n_eval`` samples), with the diagnosis ablations
of :mod:`benchmarks.gan.treatments` in place of the SN-vs-SAN treatments, 2 seeds each, and every run logging the
mechanism diagnostics (hinge saturation of the training batches, G's gradient norm, the critic's scale and
input-gradient alignment: :mod:`benchmarks.gan.diagnosis`). Each ablation changes one thing of SAN and tests one
explanation; SN is the unchanged control:

- ``sn``: the baseline, as in the evidence run (1 D step, hinge);
- ``san``: SAN as shipped (rescale form, hinge, the same lr);
- ``san-scaled``: SAN's output × α, fixed at init so its mean |D(real)| equals SN's (scale at init / hinge
  saturation: with Adam, the hinge margin moved from 1 to 1/α);
- ``san-lr``: SAN with the critic's lr ÷ 4 (lr);
- ``san-reparam``: the authors' ``W / s`` form (form).

Correctness and speed (stages a, b) are not repeated. Same outputs as the evidence run (≤ 8 files:
``gpu_report.md`` with the mechanism table, ``gpu_results.json``, ``quality.png``, ``worker_logs.txt``).
"""

from __future__ import annotations

TREATMENTS = ["sn", "san", "san-scaled", "san-lr", "san-reparam"]
SKIP = {"correctness", "speed"}
SMOKE_MINUTES = 2.0  # CPU rehearsal: tiny widths, all workers at once on 2 cores
