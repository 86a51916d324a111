"""Markdown rendering of the constants benchmark (one table plus a header and notes)."""

from __future__ import annotations

COLUMNS = [
    "critic", "layer", "×", "fft (ref)", "matmul unchunked", "matmul 64 MiB", "pruned", "auto",
    "pruned eval.", "SN power iter", "fwd+bwd", "auto / fwd+bwd", "verdict",
]  # fmt: skip
CONV_METHODS = ["fft", "matmul_unchunked", "matmul", "pruned", "auto"]
TOLERANCE = 1e-4


def error_line(err: BaseException) -> str:
    """``"Type: first line of the message"`` (a report cell; an empty message gives ``"Type: "``)."""
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms" if ms >= 0.1 else f"{ms:.3f} ms"


def fmt_mib(mib: float) -> str:
    return f"{mib:.0f} MiB" if mib >= 100 else f"{mib:.1f} MiB" if mib >= 1 else f"{mib:.2f} MiB"


def _reps(res: dict, repeats: int) -> str:
    return "" if res["reps"] >= repeats else f" †{res['reps']}"


def _method_cell(res: dict, repeats: int, vs_fft: bool = True) -> str:
    ratio = f" ({res['x_fft']:.2f}×)" if vs_fft and "x_fft" in res else ""
    wrong = f" **≠ fft, rel {res['rel_err']:.1e}**" if res.get("rel_err", 0) > TOLERANCE else ""
    return f"{fmt_ms(res['ms'])}{ratio}{_reps(res, repeats)}, {fmt_mib(res['mib'])}{wrong}"


def _fb_cell(fb: dict, repeats: int) -> str:
    scaled = f" (b{fb['batch']} ×{fb['scale']:.0f})" if fb["scale"] != 1 else ""
    return f"{fmt_ms(fb['ms'])}{scaled}{_reps(fb, repeats)}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(meta: dict, results: dict) -> str:
    reps = meta["repeats"]
    lines = [_row(COLUMNS), _row(["---"] * len(COLUMNS))]
    for name, res in results.items():
        for row in res["layers"]:
            m = row["methods"]
            if row["kind"] == "conv":
                cells = [_method_cell(m[k], reps, vs_fft=k != "fft") for k in CONV_METHODS[:-1]]
                auto = _method_cell(m["auto"], reps)
                auto += " [pruned]" if m["auto"]["evaluated"] < m["auto"]["total"] else ""
                pruned = f"{m['pruned']['evaluated']}/{m['pruned']['total']}"
                pruned += f" ({100 * m['pruned']['evaluated'] / m['pruned']['total']:.1f} %)"
            else:
                cells = ["—"] * 4
                auto, pruned = "svd " + _method_cell(m["auto"], reps), "—"
            lines.append(
                _row(
                    [name, row["layer"], str(row["count"]), *cells, auto, pruned,
                     fmt_ms(row["sn_iter"]["ms"]) + _reps(row["sn_iter"], reps),
                     _fb_cell(row["fwd_bwd"], reps), f"{row['auto_pct']:.2f} %", ""]
                )
            )  # fmt: skip
        t = res["total"]
        verdict = (
            f"time {t['pct']:.2f} % ≤ {t['target_pct']:g} %: **{'PASS' if t['time_pass'] else 'FAIL'}**; "
            f"max auto mem {fmt_mib(t['max_auto_mib'])} ≤ {t['mem_target_mib']:g} MiB: "
            f"**{'PASS' if t['mem_pass'] else 'FAIL'}**"
        )
        lines.append(
            _row(
                [f"**{name}**", f"**whole critic** ({t['num_conv']} conv + {t['num_linear']} linear)", "",
                 "", "", "", "", f"**SAN {fmt_ms(t['san_ms'])}**{_reps({'reps': t['san_reps']}, reps)}",
                 "", "", f"**{fmt_ms(t['fwd_bwd_ms'])}**", f"**{t['pct']:.2f} %**", verdict]
            )
        )  # fmt: skip
    return "\n".join(lines)


def notes(meta: dict) -> str:
    return "\n".join(
        [
            "Notes:",
            "- Method cells: median time of the timed calls, with a warm san_core DFT cache; `(x×)` = time / "
            "fft time; then the peak extra memory of one call with a **cold** cache (`san_core.clear_dft_cache()` "
            "first, so building the DFT matrices counts); that call is the warm-up of the timed ones. "
            "`matmul unchunked` = `max_memory=1<<60`; `matmul 64 MiB` = default chunking.",
            "- Memory: CUDA `max_memory_allocated` after `reset_peak_memory_stats` minus `memory_allocated` "
            "before; CPU peak of the running sum of the profiler's allocation/free events (probe: "
            f"`torch.empty(100 MiB)` read {meta['memory_probe_mib']:.1f} MiB).",
            "- `pruned eval.`: kernels whose spectrum the pruned method evaluated (`stats`), default PyTorch "
            "init (seed 0); trained weights prune differently. All constants fp32, `stride_mode='paper'`; "
            f"methods agree with fft to rel. {TOLERANCE:g} unless marked ≠.",
            "- SN power iter: one `torch.nn.utils.spectral_norm` iteration on W.reshape(out, -1) "
            "(v = n(Wᵀu), u = n(Wv), σ = u·Wv).",
            f"- fwd+bwd: `nn.Conv2d(padding_mode='circular')` / `nn.Linear` at batch {meta['batch']}, input "
            "requiring grad, backward of `output.sum()`; `(bN ×s)` = measured at batch N and scaled "
            "linearly by s (CPU, heavy layers). Whole-critic fwd+bwd = Σ count × layer fwd+bwd.",
            "- Whole-critic SAN: every layer instance (duplicates included) with `method='auto'`, linear "
            "layers with `linear_constant(method='svd')`, warm cache. Targets: ≤ 5 % of fwd+bwd (≤ 2 % for "
            "spade and esrgan), per-layer auto peak memory ≤ 64 MiB.",
            f"- `†n`: only n timed calls (the warm-up showed {meta['repeats']} would exceed the time budget).",
        ]
    )


def render(meta: dict, results: dict) -> tuple[str, str]:
    """The table alone, and the full markdown document (header, table, notes)."""
    body = table(meta, results)
    header = "\n".join(
        [
            "# SAN constants benchmark",
            "",
            f"- device: {meta['device']}",
            f"- torch {meta['torch']}, {meta['threads']} threads",
            f"- git commit: {meta['commit']}",
            f"- command: `{meta['command']}`",
            f"- batch {meta['batch']}, repeats {meta['repeats']}, total runtime {meta['runtime_s']:.0f} s",
            f"- load average (1/5/15 min) at start {meta['loadavg_start']}, at end {meta['loadavg_end']}",
        ]
    )
    loads = [float(v) for v in f"{meta['loadavg_start']} / {meta['loadavg_end']}".split(" / ") if v != "n/a"]
    if loads and meta.get("cpu_count") and max(loads) > meta["cpu_count"]:
        header += (
            f"\n- **warning**: the load average exceeded the {meta['cpu_count']} CPUs: other processes shared the "
            "machine, so timings (fwd+bwd included) are inflated and noisy; compare ratios, not absolute times"
        )
    return body, f"{header}\n\n{body}\n\n{notes(meta)}\n"
