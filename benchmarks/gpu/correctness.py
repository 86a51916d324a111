"""Stage (a) of the GPU run: CUDA correctness.

1. ``pytest -m gpu`` in a subprocess (time-boxed; its output goes to ``pytest_gpu.log``); where pytest is not
   installed this is recorded as not run. The device machine has the working tree but nothing installed from it,
   so the subprocess gets the repository root and ``adapters/`` on ``PYTHONPATH`` (:func:`pytest_env`): without
   them every test module importing an adapter (``san_spade``, ``san_studiogan``, …) fails to collect, and the
   stage would read "FAILED" (and lose the gpu tests in those modules) however the CUDA tests went.
2. ``san_core.conv_constant`` / ``linear_constant`` on the device vs a float64 CPU brute force (every kernel
   wrapped onto the layer's input grid, full ``fft2``, max modulus; ``svdvals``) for every distinct layer of the
   four benchmarked critics (SPADE/ESRGAN inputs included) plus a transposed and a dilated conv. Layers too large
   to brute-force every kernel in seconds get one kernel whose DC term exceeds every other kernel's L1 bound
   (|DFT| ≤ ‖w‖₁), so the exact answer is that kernel's brute-force maximum.
3. A whole critic's ``normalize_()`` with ``torch.cuda.set_sync_debug_mode("error")`` where ``san_core.SAN``
   accepts ``sync_free=`` (checked with ``inspect.signature``): any host-device sync raises.
4. ``form="reparametrize"`` vs ``"rescale"`` on the device (when available): same effective weights.
"""

from __future__ import annotations

import copy
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import san_core

from .. import _critics
from .._report import error_line
from ..gan.models_cnn import CNNCritic

REPO = Path(__file__).resolve().parents[2]
BRUTE_LIMIT = 4_000_000  # kernels × grid cells brute-forced in full; larger layers: a planted maximum (below)
REL_TOL = 2e-5  # float32 constants vs float64: observed ~1e-7 relative; 2e-5 leaves room for TF32-free GEMMs


def pytest_env() -> dict[str, str]:
    """This process's environment with the repository root and ``adapters/`` first on ``PYTHONPATH``, so the
    adapters import from the working tree where the project is not installed (the device machine)."""
    paths = [str(REPO), str(REPO / "adapters"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_pytest(paths: list[str], timeout_s: float, log: Path) -> dict[str, Any]:
    """``python -m pytest -m gpu -q PATHS`` with a timeout; the tail of its output is also returned."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"status": "not run: pytest is not installed on this machine", "rc": None}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        *paths,
    ]  # a module that cannot import here must not stop the rest
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=pytest_env(), capture_output=True, text=True, timeout=max(5.0, timeout_s)
        )
    except subprocess.TimeoutExpired as err:
        text = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        log.write_text(text + f"\n[timed out after {timeout_s:.0f} s]\n")
        return {"status": f"timed out after {timeout_s:.0f} s", "rc": None, "command": " ".join(cmd[1:])}
    log.write_text(proc.stdout + proc.stderr)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    summary = lines[-1] if lines else ""
    if proc.returncode == 0:
        status = "passed" if " passed" in summary else "nothing ran (all skipped or deselected)"
    else:
        status = {5: "no gpu tests collected"}.get(proc.returncode, f"FAILED (rc {proc.returncode})")
    return {"status": status, "rc": proc.returncode, "summary": lines[-1] if lines else "",
            "seconds": time.perf_counter() - t0, "command": " ".join(cmd[1:])}  # fmt: skip


def brute_conv(w: torch.Tensor, size: tuple[int, ...], dilation: int = 1) -> float:
    """Lemma 1 by brute force in float64 on the CPU: each kernel wrapped onto the (H, W) grid, max |fft2|."""
    w = w.detach().double().cpu()
    h, wd = size
    grid = torch.zeros(*w.shape[:2], h, wd, dtype=torch.float64)
    for a in range(w.shape[2]):
        for b in range(w.shape[3]):
            grid[:, :, (a * dilation) % h, (b * dilation) % wd] += w[:, :, a, b]
    return float(torch.fft.fft2(grid).abs().amax())


def constants_check(device: torch.device) -> dict[str, Any]:
    """Every distinct conv/linear layer shape of the four critics (plus transposed/dilated): device vs float64."""
    rows, gen = [], torch.Generator().manual_seed(0)
    layers = [(name, layer) for name, fn in _critics.CRITICS.items() for layer, _ in _critics.unique_layers(fn())]
    for name, layer in layers:
        if layer.kind == "linear":
            w = torch.randn(layer.out_ch, layer.in_ch, generator=gen) * 0.05
            got = float(san_core.linear_constant(w.to(device)))
            ref = float(torch.linalg.svdvals(w.double())[0])
        else:
            w = torch.randn(layer.out_ch, layer.in_ch, layer.k, layer.k, generator=gen) * 0.05
            big = layer.out_ch * layer.in_ch * layer.size[0] * layer.size[1] > BRUTE_LIMIT
            if big:  # one kernel made to hold the max: its DC term beats every other kernel's L1 bound
                w[1, 2] = w.abs().sum((2, 3)).max() / layer.k**2 + w[1, 2].abs()
            got = float(san_core.conv_constant(w.to(device), layer.size, stride=layer.stride))
            ref = brute_conv(w[1:2, 2:3], layer.size) if big else brute_conv(w, layer.size)
        rows.append({"critic": name, "layer": layer.label, "device": got, "float64": ref, "rel": abs(got - ref) / ref})
    w = torch.randn(32, 16, 3, 3, generator=gen) * 0.05  # dilated, kernel taps wrapping on a small map
    got = float(san_core.conv_constant(w.to(device), (5, 5), dilation=2))
    rows.append({"critic": "extra", "layer": "32→16 k3 d2 @5×5", "device": got, "float64": brute_conv(w, (5, 5), 2)})
    wt = torch.randn(16, 8, 4, 4, generator=gen) * 0.05  # ConvTranspose2d(16→8): the adjoint's constant
    got = float(san_core.conv_constant(wt.to(device), (8, 8), transposed=True))
    rows.append({"critic": "extra", "layer": "transposed 16→8 k4 @8×8", "device": got,
                 "float64": brute_conv(wt.transpose(0, 1), (8, 8))})  # fmt: skip
    for r in rows[-2:]:
        r["rel"] = abs(r["device"] - r["float64"]) / r["float64"]
    worst = max(r["rel"] for r in rows)
    return {"layers": rows, "max_rel": worst, "ok": worst <= REL_TOL, "tolerance": REL_TOL}


def sync_free_check(device: torch.device) -> dict[str, Any]:
    """``normalize_()`` of a whole SNGAN CNN critic with CUDA sync debug mode "error" (when ``sync_free`` exists)."""
    params = inspect.signature(san_core.SAN).parameters
    if "sync_free" not in params:
        return {"status": "not run: this san_core.SAN has no sync_free= option"}
    if device.type != "cuda":
        return {"status": "not run: needs CUDA (smoke run on CPU)"}
    critic = CNNCritic().to(device)
    san = san_core.apply_san(critic, example_input=torch.zeros(2, 3, 32, 32, device=device), sync_free=True)
    san.normalize_(force=True)  # warm-up (caches) outside the debug mode
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        san.normalize_(force=True)
        status = "passed: no host-device synchronization"
    except RuntimeError as err:
        status = f"FAILED: {str(err).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    return {"status": status}


def reparam_check(device: torch.device) -> dict[str, Any]:
    """Same critic, same step: the two forms' effective weights and outputs agree on the device."""
    if "form" not in inspect.signature(san_core.SAN).parameters:
        return {"status": "not run: this san_core.SAN has no form= option"}
    torch.manual_seed(0)
    base = CNNCritic(ch=16).to(device)
    x = torch.randn(4, 3, 32, 32, device=device)
    outs = {}
    for form in ("rescale", "reparametrize"):
        critic = copy.deepcopy(base)
        san = san_core.apply_san(critic, example_input=x[:1], form=form)
        san.normalize_(force=True)
        outs[form] = critic(x).detach()
    diff = float((outs["rescale"] - outs["reparametrize"]).abs().max() / outs["rescale"].abs().max())
    return {"status": "passed" if diff < 1e-4 else "FAILED", "max_rel_output_diff": diff}


def run(device: torch.device, gpu_tests: list[str], pytest_timeout_s: float, log: Path) -> dict[str, Any]:
    """All four checks; each failure is recorded, none stops the others."""
    out: dict[str, Any] = {}
    for key, fn in (("pytest_gpu", lambda: run_pytest(gpu_tests, pytest_timeout_s, log)),
                    ("constants", lambda: constants_check(device)), ("sync_free", lambda: sync_free_check(device)),
                    ("reparametrize", lambda: reparam_check(device))):  # fmt: skip
        t0 = time.perf_counter()
        try:
            out[key] = fn()
        except Exception as err:  # a failing check is a result, not a crash
            out[key] = {"status": f"error: {error_line(err)}"}
        out[key]["seconds"] = round(time.perf_counter() - t0, 2)
    return out
