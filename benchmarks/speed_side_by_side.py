"""Time and memory of one critic update per treatment, as ratios to no normalization, measured in one run.

    python -m benchmarks.speed_side_by_side                 # CPU (small batches for the large critics; no U-Net)
    python -m benchmarks.speed_side_by_side --device cuda   # every critic at its training batch
    python -m benchmarks.speed_side_by_side --critics unet --size 64 --threads 1 --rounds 3 \
        --out benchmarks/results/speed_side_by_side_unet_cpu    # the U-Net on CPU at 64×64 (see the note it writes)

A critic update = D(real) and D(fake) on fixed tensors, hinge loss (+ 10·GP for WGAN-GP), backward, Adam
step, and the treatment's normalization (SN's power iteration in the forward; SAN's rescale after the
step). Repeats are interleaved (round r times every treatment once) so drift in machine load hits all
treatments alike. "SAN every N" = median step without a rescale + (median forced rescale) / N.
Writes ``benchmarks/results/speed_side_by_side_<device>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import _measure
from ._report import error_line, fmt_mib, fmt_ms
from .gan.checkpoint import atomic_json
from .gan.critics_extra import UNET_NORMALIZED, PatchCritic, VGGCritic, unet_critic, upstream_unet
from .gan.losses import d_hinge, gradient_penalty
from .gan.models_cnn import CNNCritic
from .gan.models_resnet import ResNetCritic
from .gan.treatments import apply_treatment, parse_treatment
from .side_by_side import _measure_threads

RESULTS = Path(__file__).resolve().parent / "results"
TREATMENTS = ["none", "sn", "gp", "san", "san-every100", "san-r25", "circular"]
# name: (constructor, input shape without batch, CPU batch, CUDA batch, description)
CRITICS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int, int, str]] = {
    "sngan_cnn": (CNNCritic, (3, 32, 32), 64, 64, "SNGAN standard CNN critic, 32×32"),
    "resnet": (ResNetCritic, (3, 32, 32), 64, 64, "SNGAN CIFAR ResNet critic (128 ch), 32×32"),
    "esrgan": (VGGCritic, (3, 128, 128), 4, 16, "ESRGAN VGG-128 critic (ModifiedVGG), 128×128"),
    "spade": (PatchCritic, (39, 256, 512), 1, 4, "SPADE PatchGAN critic (n_layers_D=4, 39 ch), 256×512"),
    # Real-ESRGAN trains at batch 12 on 256×256; on CPU one update there is minutes (measure with --size 64).
    "unet": (unet_critic, (3, 256, 256), 12, 12, "Real-ESRGAN U-Net critic (UNetDiscriminatorSN, 64 ch), 256×256"),
}
#: Layers the treatments normalize where not every one (upstream's SN layers; ``net.`` = BasicSR's own module).
TARGETS: dict[str, tuple[str, ...]] = {"unet": (*UNET_NORMALIZED, *(f"net.{p}" for p in UNET_NORMALIZED))}


class Bench:
    """One treatment on a copy of one critic, with fixed inputs and its own optimizer."""

    def __init__(
        self, base: nn.Module, key: str, real: torch.Tensor, fake: torch.Tensor, targets: tuple[str, ...] | None = None
    ) -> None:
        self.treatment = parse_treatment(key)
        self.D = copy.deepcopy(base)
        self.applied = apply_treatment(self.treatment, self.D, (real[:1],), seed=0, targets=targets)
        self.opt = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.5, 0.9))
        self.applied.attach(self.opt)
        self.real, self.fake = real, fake
        self.gen = torch.Generator().manual_seed(0)
        self.times: list[float] = []
        self.norm_times: list[float] = []

    def step(self) -> None:
        loss = d_hinge(self.D(self.real), self.D(self.fake))
        if self.treatment.kind == "gp":
            loss = loss + 10.0 * gradient_penalty(self.D, self.real, self.fake, None, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def timed(self, fn: Callable[[], Any], device: torch.device) -> float:
        """Milliseconds of ``fn()``: CUDA events on a GPU (device time between the two records), else wall time."""
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)

    def sample(self, device: torch.device) -> None:
        """Time one update; with ``interval > 1`` also one forced rescale (amortized in :meth:`per_step_ms`)."""
        self.times.append(self.timed(self.step, device))
        if self.treatment.interval > 1:
            san = self.applied.san
            assert san is not None
            self.norm_times.append(self.timed(lambda: san.normalize_(force=True), device))

    def per_step_ms(self) -> float:
        step = statistics.median(self.times)
        if self.treatment.interval > 1:  # amortized: a step without rescale + one rescale every N steps
            return step + statistics.median(self.norm_times) / self.treatment.interval
        return step


def bench_critic(
    name: str,
    device: torch.device,
    batch: int,
    rounds: int,
    treatments: list[str],
    shape: tuple[int, ...] | None = None,
    deadline: float | None = None,
    profile_memory: bool = True,
    build: Callable[[], nn.Module] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Interleaved timing of ``treatments`` on critic ``name`` (``shape``: input without batch, default the
    critic's own); stops after the round in which ``time.perf_counter()`` passes ``deadline`` (≥ 1 round);
    ``profile_memory=False`` skips the (slow on CPU) peak-memory step (``mib`` is then ``None``); ``build``
    replaces the critic's constructor (e.g. ``UNetCritic`` where BasicSR must not be imported). ``errors``: when
    given, a treatment that raises (set-up, warm-up or a timed step) is dropped and its error recorded there,
    and the others are still timed; otherwise the error propagates."""
    make, default_shape, *_ = CRITICS[name]
    shape = shape or default_shape
    torch.manual_seed(0)
    base = (build or make)().to(device)
    real = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1)).to(device)
    fake = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(2)).to(device)
    benches: dict[str, Bench] = {}
    memory = {}

    def guarded(key: str, fn: Callable[[], Any]) -> None:
        if errors is None:
            fn()
            return
        try:
            fn()
        except Exception as err:  # recorded; the other treatments are still timed
            errors[key] = error_line(err)
            benches.pop(key, None)

    for key in treatments:

        def set_up(key: str = key) -> None:
            b = benches[key] = Bench(base, key, real, fake, TARGETS.get(name))
            b.step()  # warm-up (SAN's first-forward rescale, allocator, caches, a CUDA graph's capture)
            memory[key] = _measure.peak_extra_mib(b.step, device)[1] if profile_memory else None

        guarded(key, set_up)
    bar = _measure.Progress(rounds)
    for r in range(rounds):
        for key, b in list(benches.items()):
            guarded(key, lambda b=b: b.sample(device))
        bar.step(f"{name} round {r + 1}/{rounds}")
        if deadline is not None and time.perf_counter() > deadline:
            break
    bar.close()
    none_ms = benches["none"].per_step_ms() if "none" in benches else None
    out = {}
    for key, b in benches.items():
        ms = b.per_step_ms()
        spread = (max(b.times) - min(b.times)) / statistics.median(b.times)
        out[key] = {"ms": ms, "x_none": ms / none_ms if none_ms else None, "mib": memory[key], "spread": spread,
                    "samples": len(b.times)}  # fmt: skip
        if b.norm_times:
            out[key]["rescale_ms"] = statistics.median(b.norm_times)
    return out


def verdicts(res: dict[str, Any]) -> dict[str, Any]:
    """The paper's claims: SAN ≈ SN (within ±10 %) and SAN ≤ 0.8 × GP per critic update."""
    v: dict[str, Any] = {}
    if {"san", "sn"} <= res.keys():
        v["san_over_sn"] = res["san"]["ms"] / res["sn"]["ms"]
        v["same_as_sn"] = 0.9 <= v["san_over_sn"] <= 1.1
    if {"san", "gp"} <= res.keys():
        v["san_over_gp"] = res["san"]["ms"] / res["gp"]["ms"]
        v["20pct_below_gp"] = v["san_over_gp"] <= 0.8
    return v


def render(meta: dict[str, Any], results: dict[str, Any]) -> str:
    keys = meta["treatments"]
    labels = [parse_treatment(k).label for k in keys]
    head = ["critic", "batch × input", *labels, "SAN / SN", "SAN / GP", "SAN = SN (±10 %)?", "SAN ≤ 0.8 GP?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    mem = ["| critic | " + " | ".join(labels) + " |", "|---|" + "---|" * len(keys)]
    for name, r in results.items():
        res, v = r["treatments"], r["verdicts"]
        cells = [f"{fmt_ms(res[k]['ms'])} ({res[k]['x_none']:.2f}×)" if k in res else "—" for k in keys]
        yes = {True: "**yes**", False: "**no**", None: "—"}
        lines.append(
            "| " + " | ".join([name, f"{r['batch']} × {'×'.join(map(str, r['shape']))}", *cells,
                               f"{v.get('san_over_sn', float('nan')):.2f}", f"{v.get('san_over_gp', float('nan')):.2f}",
                               yes[v.get("same_as_sn")], yes[v.get("20pct_below_gp")]]) + " |"
        )  # fmt: skip
        mem.append("| " + " | ".join([name, *(fmt_mib(res[k]["mib"]) if k in res else "—" for k in keys)]) + " |")
    rescale = [
        f"{name}: {fmt_ms(r['treatments'][k]['rescale_ms'])}"
        for name, r in results.items()
        for k in keys
        if "rescale_ms" in r["treatments"].get(k, {})
    ]
    return "\n".join(
        [
            "# Critic update cost side by side", "",
            f"- device: {meta['device']}; torch {meta['torch']}, {meta['threads']} threads",
            f"- git commit: {meta['commit']}", f"- command: `{meta['command']}`",
            f"- {meta['rounds']} interleaved rounds; load average (1/5/15 min) {meta['load_average']}; "
            f"runtime {meta['runtime_s']:.0f} s", "",
            "Median wall time of one critic update (× = ratio to no normalization, same run):", "", *lines, "",
            "Peak memory allocated during one critic update above what was allocated before it:", "", *mem, "",
            "Notes:",
            "- Update = D(real) + D(fake) on fixed random tensors, hinge loss (+10·GP at random interpolates for "
            "WGAN-GP, a double backward), backward, Adam step, normalization (SN: one power iteration per forward "
            "via `torch.nn.utils.parametrizations.spectral_norm`; SAN: `san_core.apply_san` + `attach`, rescale "
            "after the step, circular padding).",
            "- `circular padding only` = SAN's padding switch without any normalization: the part of SAN's cost "
            "that is PyTorch's circular padding (an explicit padded copy of every conv input and its backward), "
            "not the rescale.",
            "- SAN every 100 = median update without a rescale + median forced rescale / 100; one full rescale "
            "(every conv's ‖W‖₀,∞ on its input size, σ₁ of dense layers) costs " + ", ".join(rescale) + ".",
            f"- {meta['batch_note']}",
            "- Paper (§Efficiency): on CIFAR-10 a SAN critic update costs the same as SN and 20 % less than GP. "
            "'yes' where SAN/SN is within 0.9-1.1 and SAN/GP ≤ 0.8.",
            "",
        ]
    )  # fmt: skip


def _module_note(name: str) -> str:
    """Which module the U-Net row timed (the installed upstream's, or the equivalent one here); "" otherwise."""
    if name != "unet":
        return ""
    if upstream_unet() is not None:
        return "BasicSR's own `UNetDiscriminatorSN` (spectral norm stripped, then each treatment on conv1-conv8)"
    return "`benchmarks.gan.critics_extra.UNetCritic` (same layers; BasicSR not importable), treatments on conv1-conv8"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed_side_by_side", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--critics", help=f"comma-separated subset of {list(CRITICS)} (default all; on CPU all but unet)")
    p.add_argument("--treatments", default=",".join(TREATMENTS))
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--batch", type=int, help="one batch size for every critic (default: per critic and device)")
    p.add_argument("--size", type=int, help="square input size for every critic (default: each critic's own)")
    p.add_argument("--threads", default="auto", help="torch CPU threads; auto = one per idle core")
    p.add_argument("--out", type=Path, help="output stem (default benchmarks/results/speed_side_by_side_<device>)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(_measure_threads(args.threads))
    treatments = args.treatments.split(",")
    if "none" not in treatments:
        treatments.insert(0, "none")
    start, load = time.perf_counter(), _measure.load_average()
    results = {}
    default = [n for n in CRITICS if device.type == "cuda" or n != "unet"]  # a CPU U-Net update: minutes
    for name in args.critics.split(",") if args.critics else default:
        if name not in CRITICS:
            raise SystemExit(f"--critics: expected names from {list(CRITICS)}, got {name!r}")
        _, shape, cpu_b, cuda_b, desc = CRITICS[name]
        batch = args.batch or (cuda_b if device.type == "cuda" else cpu_b)
        shape = (*shape[:-2], args.size, args.size) if args.size else shape
        res = bench_critic(name, device, batch, args.rounds, treatments, shape=shape)
        results[name] = {"description": desc, "batch": batch, "shape": list(shape), "treatments": res,
                         "verdicts": verdicts(res), "module": _module_note(name)}  # fmt: skip
    meta = {
        "device": _measure.device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "commit": _measure.git_commit(), "rounds": args.rounds, "treatments": treatments,
        "command": "python -m benchmarks.speed_side_by_side " + shlex.join(sys.argv[1:] if argv is None else argv),
        "load_average": f"{load} at start, {_measure.load_average()} at end", "runtime_s": time.perf_counter() - start,
        "batch_note": "Batches: 64 for the 32×32 critics (the paper's CIFAR-10 batch); "
        + ("ESRGAN 4 and SPADE 1 on CPU to keep the run short (ESRGAN trains with 16, SPADE with 1-2 per GPU)"
           if device.type == "cpu" else "ESRGAN 16, SPADE 4") + "; U-Net 12 (Real-ESRGAN's batch)."
        + (f" **Batch {args.batch} for every critic** (`--batch`)." if args.batch else "")
        + (f" **Input size reduced to {args.size}×{args.size} for every critic** (`--size`; the critics' own "
           "sizes are in the descriptions, e.g. Real-ESRGAN's U-Net trains on 256×256 crops)." if args.size else "")
        + "".join(f" {name}: {r['module']}." for name, r in results.items() if r["module"]),
    }  # fmt: skip
    md = render(meta, results)
    stem = args.out or RESULTS / f"speed_side_by_side_{device.type}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(md)
    atomic_json({"meta": meta, "results": results}, stem.with_suffix(".json"))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
