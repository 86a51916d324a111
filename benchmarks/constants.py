"""Cost of the exact SAN constants per critic layer vs. spectral norm and the layer's forward+backward.

Run ``python -m benchmarks.constants --help``. Prints one markdown table and writes it (with a
header) to ``--out`` and the same numbers to ``--out`` with a ``.json`` suffix.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import san_core
from benchmarks import _measure as M
from benchmarks._critic_steps import REAL_BATCH, render_steps, whole_critic_steps
from benchmarks._critics import CRITICS, Layer, unique_layers
from benchmarks._report import render

#: name -> conv_constant keyword arguments; ``fft`` is the reference.
METHODS = {
    "fft": {"method": "fft"},
    "matmul_unchunked": {"method": "matmul", "max_memory": 1 << 60},
    "matmul": {"method": "matmul"},
    "pruned": {"method": "pruned"},
    "auto": {"method": "auto"},
}
TARGET_PCT = {"sngan_cnn": 5.0, "resnet": 5.0, "spade": 2.0, "esrgan": 2.0}
MEMORY_TARGET_MIB = 64.0
#: CPU fwd+bwd is never measured below this batch (smaller ones scale too noisily).
MIN_SUB_BATCH = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.constants", description=__doc__)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=None, help="fwd+bwd batch (default 64, 16 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 5, 3 quick)")
    p.add_argument("--critics", default=None, help=f"comma list of {','.join(CRITICS)} (default all)")
    p.add_argument("--out", type=Path, default=None, help="markdown output (default benchmarks/results/...)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="smoke run: sngan_cnn,resnet at batch 16")
    p.add_argument(
        "--steps-only", action="store_true",
        help="only the whole-critic step table (ops, syncs, time; fwd+bwd at each critic's real batch)",
    )  # fmt: skip
    p.add_argument("--budget", type=float, default=None, help="max s of timed calls per measurement (5, 0.5 quick)")
    p.add_argument(
        "--max-call", type=float, default=None,
        help="CPU only: fwd+bwd runs at the largest power-of-2 fraction of --batch whose call is estimated "
        "to take at most this many seconds (1, 0.25 quick; never below 8), scaled linearly to --batch",
    )  # fmt: skip
    args = p.parse_args(argv)
    args.batch = args.batch or (16 if args.quick else 64)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.budget = args.budget or (0.5 if args.quick else 5.0)
    args.max_call = args.max_call or (0.25 if args.quick else 1.0)
    args.critics = (args.critics or ("sngan_cnn,resnet" if args.quick else ",".join(CRITICS))).split(",")
    unknown = [c for c in args.critics if c not in CRITICS]
    if unknown:
        p.error(f"unknown critics {unknown}; choose from {list(CRITICS)}")
    if args.out is None:
        suffix = ("_quick" if args.quick else "") + ("_steps" if args.steps_only else "")
        args.out = M.ROOT / "benchmarks" / "results" / f"constants_{args.device}{suffix}.md"
    return args


def conv_methods(layer: Layer, weight: torch.Tensor, device: torch.device, args) -> dict:
    """Time (warm DFT cache) and peak extra memory (cold cache) of every method on one conv layer."""
    out = {}
    for name, kwargs in METHODS.items():

        def call(stats=None, kwargs=kwargs):
            return san_core.conv_constant(weight, layer.size, stride=layer.stride, stats=stats, **kwargs)

        stats: dict = {}
        san_core.clear_dft_cache()
        value, mem, took = M.timed_peak(functools.partial(call, stats), device)  # cold cache
        ms, reps = M.time_ms(call, device, args.repeats, args.budget, warmed_s=took)  # warm cache
        out[name] = {"ms": ms, "reps": reps, "mib": mem, "value": float(value), **stats}
    ref = out["fft"]["value"]
    for res in out.values():
        res["rel_err"] = abs(res["value"] - ref) / ref
        res["x_fft"] = res["ms"] / out["fft"]["ms"]
    return out


def linear_method(weight: torch.Tensor, device: torch.device, args) -> dict:
    def call():
        return san_core.linear_constant(weight, method="svd")

    value, mem, took = M.timed_peak(call, device)
    ms, reps = M.time_ms(call, device, args.repeats, args.budget, warmed_s=took)
    return {"auto": {"ms": ms, "reps": reps, "mib": mem, "value": float(value), "method": "svd"}}


def sn_power_iteration(weight: torch.Tensor, device: torch.device, args) -> dict:
    """One iteration as ``torch.nn.utils.spectral_norm``: v = n(Wᵀu), u = n(Wv), σ = u·Wv."""
    mat = weight.reshape(weight.shape[0], -1)
    u = F.normalize(torch.randn(mat.shape[0], device=device), dim=0)

    def call():
        with torch.no_grad():
            v = F.normalize(torch.mv(mat.t(), u), dim=0)
            u_new = F.normalize(torch.mv(mat, v), dim=0)
            return torch.dot(u_new, torch.mv(mat, v))

    ms, reps = M.time_ms(call, device, args.repeats, args.budget)
    return {"ms": ms, "reps": reps}


def forward_backward(layer: Layer, device: torch.device, args) -> dict:
    """The layer's forward + backward of ``output.sum()`` (input requires grad), circular padding."""
    module = layer.module(device)

    def make(batch: int):
        x = torch.randn(layer.input_shape(batch), device=device, requires_grad=True)

        def call():
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()

        return call

    sub, call, warmed = args.batch, None, None
    if device.type == "cpu" and sub > 1:
        probe, call = min(sub, 2), make(min(sub, 2))
        call()  # one-time set-up costs
        start = time.perf_counter()
        call()
        warmed = time.perf_counter() - start
        while sub > MIN_SUB_BATCH and warmed / probe * sub > args.max_call:
            sub //= 2
        call, warmed = (call, warmed) if sub == probe else (None, None)
    ms, reps = M.time_ms(call or make(sub), device, args.repeats, args.budget, warmed_s=warmed)
    scale = args.batch / sub
    return {"ms": ms * scale, "ms_measured": ms, "batch": sub, "scale": scale, "reps": reps}


def bench_steps(name: str, device: torch.device, args, progress: M.Progress) -> dict:
    """Only the whole-critic step table, with fwd+bwd measured at the critic's real batch."""
    real = argparse.Namespace(**{**vars(args), "batch": REAL_BATCH[name]})
    fb_ms = 0.0
    for layer, count in unique_layers(CRITICS[name]()):
        progress.step(f"{name}: fwd+bwd {layer.label}")
        fb_ms += forward_backward(layer, device, real)["ms"] * count
    progress.step(f"{name}: whole-critic steps")
    return whole_critic_steps(name, device, args, fb_ms, REAL_BATCH[name])


def bench_critic(name: str, device: torch.device, args, progress: M.Progress) -> dict:
    layers = CRITICS[name]()
    torch.manual_seed(0)
    rows = []
    for layer, count in unique_layers(layers):
        progress.step(f"{name}: {layer.label}")
        weight = layer.module(device).weight.detach()
        if layer.kind == "conv":
            methods = conv_methods(layer, weight, device, args)
        else:
            methods = linear_method(weight, device, args)
        rows.append(
            {
                "layer": layer.label, "kind": layer.kind, "count": count, "methods": methods,
                "sn_iter": sn_power_iteration(weight, device, args),
                "fwd_bwd": forward_backward(layer, device, args),
            }
        )  # fmt: skip
        rows[-1]["auto_pct"] = 100 * methods["auto"]["ms"] / rows[-1]["fwd_bwd"]["ms"]

    progress.step(f"{name}: whole critic")
    weights = [layer.module(device).weight.detach() for layer in layers]

    def whole():
        for layer, w in zip(layers, weights):
            if layer.kind == "conv":
                san_core.conv_constant(w, layer.size, stride=layer.stride, method="auto")
            else:
                san_core.linear_constant(w, method="svd")

    san_ms, reps = M.time_ms(whole, device, args.repeats, args.budget)
    fb_ms = sum(r["fwd_bwd"]["ms"] * r["count"] for r in rows)
    max_mib = max(r["methods"]["auto"]["mib"] for r in rows)
    pct = 100 * san_ms / fb_ms
    total = {
        "san_ms": san_ms, "san_reps": reps, "fwd_bwd_ms": fb_ms, "pct": pct, "target_pct": TARGET_PCT[name],
        "time_pass": pct <= TARGET_PCT[name], "max_auto_mib": max_mib,
        "mem_target_mib": MEMORY_TARGET_MIB, "mem_pass": max_mib <= MEMORY_TARGET_MIB,
        "num_conv": sum(layer.kind == "conv" for layer in layers),
        "num_linear": sum(layer.kind == "linear" for layer in layers),
    }  # fmt: skip
    progress.step(f"{name}: whole-critic steps")
    return {"layers": rows, "total": total, "steps": whole_critic_steps(name, device, args, fb_ms, args.batch)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    meta = {
        "device": M.device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "commit": M.git_commit(),
        "command": shlex.join(["python", "-m", "benchmarks.constants", *(sys.argv[1:] if argv is None else argv)]),
        "cpu_count": os.cpu_count(),
        "batch": args.batch,
        "repeats": args.repeats,
        "memory_probe_mib": M.check_memory_probe(device),
        "loadavg_start": M.load_average(),
    }
    total_steps = sum(len(unique_layers(CRITICS[c]())) + 2 for c in args.critics)
    progress = M.Progress(total_steps)
    bench = bench_steps if args.steps_only else bench_critic
    results = {name: bench(name, device, args, progress) for name in args.critics}
    progress.close()
    meta["runtime_s"] = time.perf_counter() - started
    meta["loadavg_end"] = M.load_average()
    steps = render_steps({n: r if args.steps_only else r["steps"] for n, r in results.items()})
    if args.steps_only:
        table = steps
        document = (
            f"# SAN whole-critic normalization steps\n\n- device: {meta['device']}\n- torch {meta['torch']}, "
            f"{meta['threads']} threads\n- git commit: {meta['commit']}\n- command: `{meta['command']}`\n"
            f"- repeats {meta['repeats']}, total runtime {meta['runtime_s']:.0f} s\n- load average (1/5/15 min) "
            f"at start {meta['loadavg_start']}, at end {meta['loadavg_end']}\n\n{steps}\n"
        )
    else:
        table, document = render(meta, results)
        table, document = f"{table}\n\n{steps}", f"{document}\n{steps}\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(document)
    payload = {"meta": meta, "critics": results}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1, allow_nan=False, default=str) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} in {meta['runtime_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
