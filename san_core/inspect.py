"""``python -m san_core.inspect``: per critic layer, SN's estimate vs exact σ₁ vs SAN's ‖W‖₀,∞, and input sparsity.

Example::

    python -m san_core.inspect --critic mypkg.models:Critic --kwargs '{"ch": 128}' \\
        --checkpoint D.pt --batches mypkg.data:real_batches --gain-from-sparsity --gains-out gains.json

Also installed as ``san-inspect``. Modules named by ``--critic``/``--batches`` are imported with the
current directory first on the import path, as ``python -m`` does, so ``san-inspect --critic
mycritic:Critic`` works from the folder holding ``mycritic.py``.

``--batches module:callable`` is called with no arguments and must return an iterable of batches; a
tensor is passed as ``critic(x)``, a tuple/list as ``critic(*batch)``, a dict as ``critic(**batch)``.
Sparsity is a property of the data: use real images and a trained critic (random inputs or a fresh
critic measure something else). The recommendation follows the paper's Limitations (SAN helps when
features are channel-sparse); its thresholds are this tool's heuristics, not the paper's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ._loading import build_critic, load_checkpoint, load_object, move_batch
from .diagnostics import conv_singular_value, sn_estimate
from .sparsity import effective_density, gain_from_sparsity
from .spectral_norm import spectral_norm_style
from .spectrum import conv_constant, linear_constant
from .targets import Patterns, resolve, select_layers

DENSE, SPARSE = 0.1, 0.5  # zero-channel fractions: below DENSE a layer's input is "dense", above SPARSE "sparse"


@dataclass
class LayerReport:
    name: str
    type: str
    weight_shape: tuple[int, ...]
    input_size: Optional[tuple[int, ...]] = None
    sn_estimate: Optional[float] = None
    exact_sigma: Optional[float] = None
    san_constant: Optional[float] = None
    zero_fraction: Optional[float] = None
    effective_density: Optional[float] = None
    samples: int = 0
    fed_by_input: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    layers: list[LayerReport]
    recommendation: str
    gains: Optional[dict[str, float]] = None

    def table(self) -> str:
        """A markdown table, the recommendation and (when computed) the experimental gains."""

        def num(v: Optional[float], fmt: str = ".4g") -> str:
            return "—" if v is None else format(v, fmt)

        rows = [
            "| layer | type | input size | SN estimate σ(W_mat) | exact σ₁ | SAN ‖W‖₀,∞ | exact/SN | zero channels "
            "of input | effective density k_eff/n | notes |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.layers:
            ratio = r.exact_sigma / r.sn_estimate if r.exact_sigma and r.sn_estimate else None
            size = "×".join(map(str, r.input_size)) if r.input_size else "—"
            zeros = "—" if r.zero_fraction is None else f"{100 * r.zero_fraction:.1f} %"
            cells = [r.name, r.type, size, num(r.sn_estimate), num(r.exact_sigma), num(r.san_constant)]
            cells += [num(ratio, ".2f"), zeros, num(r.effective_density, ".3f"), "; ".join(r.notes)]
            rows.append("| " + " | ".join(cells) + " |")
        text = "\n".join(rows) + f"\n\nRecommendation: {self.recommendation}\n"
        if self.gains is not None:
            text += "\nPer-layer gains (EXPERIMENTAL heuristic, san_core.gain_from_sparsity; SAN(layer_gains=...)):\n"
            text += json.dumps(self.gains, indent=1) + "\n"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(r) for r in self.layers], "recommendation": self.recommendation, "gains": self.gains}


def inspect_critic(
    critic: nn.Module,
    batches: Iterable[Any],
    *,
    targets: Patterns = None,
    exclude: Patterns = None,
    threshold: float = 0.0,
    max_batches: Optional[int] = None,
    gains: bool = False,
    float64: bool = False,
) -> Report:
    """Run ``batches`` through ``critic`` (eval, no grad; flags restored) and report every Conv/Linear layer."""
    types = (nn.modules.conv._ConvNd, nn.Linear)
    layers = dict(resolve(critic, select_layers(critic, targets, exclude=exclude, types=types, what="inspect").matched))
    reports = {n: LayerReport(n, type(m).__name__, tuple(_weight(m).shape)) for n, m in layers.items()}
    sums: dict[str, float] = dict.fromkeys(layers, 0.0)
    dens: dict[str, list[float]] = {n: [0.0, 0.0] for n in layers}  # sum of k_eff/n, samples with a non-zero channel
    current: dict[str, Any] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0] if args and isinstance(args[0], Tensor) else None
            if x is None or x.dim() < 2:
                return
            r = reports[name]
            if isinstance(module, nn.modules.conv._ConvNd):
                r.input_size = tuple(x.shape[-(_weight(module).dim() - 2) :])
            norms = torch.linalg.vector_norm(x.detach().double().flatten(2), dim=2) if x.dim() > 2 else x.abs()
            sums[name] += float((norms.double() <= threshold).double().mean(1).sum())
            rho = effective_density(norms.double().flatten(1))
            dens[name][0] += float(rho.nan_to_num(0.0).sum())
            dens[name][1] += float((~rho.isnan()).sum())
            r.samples += x.shape[0]
            r.fed_by_input = r.fed_by_input or any(x is t for t in current.get("inputs", ()))

        return hook

    handles = [m.register_forward_pre_hook(make_hook(n)) for n, m in layers.items()]
    flags = {m: m.training for m in critic.modules()}
    device = next((p.device for p in critic.parameters()), torch.device("cpu"))
    try:
        critic.eval()
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                batch = move_batch(batch, device)
                values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, list) else [batch]
                current["inputs"] = [v for v in values if isinstance(v, Tensor)]
                if isinstance(batch, dict):
                    critic(**batch)
                else:
                    critic(*batch) if isinstance(batch, list) else critic(batch)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    for name, module in layers.items():
        _fill(reports[name], module, sums[name], float64)
        if dens[name][1]:
            reports[name].effective_density = dens[name][0] / dens[name][1]
    report = Report(list(reports.values()), _recommend(list(reports.values())))
    if gains:
        report.gains = _gains(report.layers)
    return report


def _weight(module: nn.Module) -> Tensor:
    """The effective weight (what forward uses: spectral-norm parametrizations and hooks applied)."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    return weight.detach()


def _fill(r: LayerReport, module: nn.Module, zero_sum: float, float64: bool) -> None:
    weight = _weight(module)
    weight = weight.double() if float64 else weight
    if r.samples:
        r.zero_fraction = zero_sum / r.samples
    style = spectral_norm_style(module)
    if style:
        r.notes.append(f"{style} spectral norm: the effective (normalized) weight")
    if r.fed_by_input:
        r.notes.append("input is the critic's input (data)")
    if isinstance(module, nn.Linear):
        r.sn_estimate = r.exact_sigma = r.san_constant = float(linear_constant(weight))
        return
    assert isinstance(module, nn.modules.conv._ConvNd)
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    r.sn_estimate = float(sn_estimate(weight, dim=1 if transposed else 0))
    if r.input_size is None:
        r.notes.append("not run by the batches: input size unknown")
        return
    if module.padding_mode != "circular":
        r.notes.append(f"padding '{module.padding_mode}': σ₁ and ‖W‖₀,∞ are for circular padding")
    kw = dict(stride=module.stride, dilation=module.dilation, groups=module.groups, transposed=transposed)
    r.san_constant = float(conv_constant(weight, r.input_size, **kw))  # type: ignore[arg-type]
    try:
        r.exact_sigma = float(conv_singular_value(weight, r.input_size, **kw))  # type: ignore[arg-type]
    except ValueError as exc:
        r.notes.append(f"exact σ₁ n/a: {exc}")


def _hidden_convs(layers: Sequence[LayerReport]) -> list[LayerReport]:
    return [r for r in layers if r.type != "Linear" and r.zero_fraction is not None and not r.fed_by_input]


def _recommend(layers: Sequence[LayerReport]) -> str:
    hidden = _hidden_convs(layers)
    if not hidden:
        return "no conv layer with a measured hidden input: SAN would act as exact σ₁ normalization of Linear layers"
    median = statistics.median(r.zero_fraction for r in hidden if r.zero_fraction is not None)
    dense = [r.name for r in hidden if r.zero_fraction is not None and r.zero_fraction < DENSE]
    tail = f" Layers with dense inputs (< {DENSE:.0%} zero channels): {dense}." if dense else ""
    head = f"median {median:.1%} zero input channels over {len(hidden)} hidden conv layers: "
    if median >= SPARSE:
        return head + "strongly channel-sparse, SAN's 1-sparse constant fits these features: SAN recommended." + tail
    if median >= DENSE:
        return head + "moderately sparse: SAN applies; where inputs are dense it under-normalizes." + tail
    return head + (
        "features are not channel-sparse; the paper's Limitations: SAN gives no boost then (e.g. BigGAN 128 after "
        "residual sums). Prefer spectral norm, or try per-layer gains (--gain-from-sparsity, experimental)." + tail
    )


def _gains(layers: Sequence[LayerReport]) -> dict[str, float]:
    usable = [r for r in _hidden_convs(layers) if r.effective_density]
    density = {r.name: float(r.effective_density or 1.0) for r in usable}
    caps = {r.name: r.exact_sigma / r.san_constant for r in usable if r.exact_sigma and r.san_constant}
    return gain_from_sparsity(density, caps)


def program_name(argv0: Optional[str] = None) -> str:
    """How the tool was invoked: ``san-inspect`` (the console script, any name it was installed under) or
    ``python -m san_core.inspect`` (``sys.argv[0]`` is then this file's path)."""
    base = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    if not base or base.endswith((".py", ".pyc")) or base in ("-c", "-m", "__main__"):
        return "python -m san_core.inspect"
    return base[: -len(".exe")] if base.endswith(".exe") else base


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=program_name(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--critic", required=True, help="module.path:ClassOrFactory (or a module instance)")
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments for the class/factory")
    p.add_argument("--checkpoint", help="state dict file (torch.save), 'module.' prefixes stripped")
    p.add_argument("--checkpoint-key", help="key of the state dict inside the checkpoint dict")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--batches", help="module.path:callable returning an iterable of batches")
    src.add_argument("--random-input", help="shape of N(0,1) batches, e.g. 16,3,32,32 (sparsity then means little)")
    p.add_argument("--max-batches", type=int, default=8, help="batches to run (default 8)")
    p.add_argument("--targets", nargs="*", help="glob patterns of layers (default: all Conv*/Linear)")
    p.add_argument("--exclude", nargs="*", help="glob patterns of layers to skip")
    p.add_argument("--threshold", type=float, default=0.0, help="a channel counts as zero when its norm <= this")
    p.add_argument("--device", default="cpu")
    p.add_argument("--float64", action="store_true", help="compute the constants in float64")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (1 is fastest on busy CPUs)")
    p.add_argument("--gain-from-sparsity", action="store_true", help="EXPERIMENTAL: per-layer gains {layer: g}")
    p.add_argument("--gains-out", help="write the gains as JSON here (implies --gain-from-sparsity)")
    p.add_argument("--json", help="write the full report as JSON here")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse_args(argv)
    if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` does: the current folder first
        sys.path.insert(0, os.getcwd())
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        kwargs = json.loads(args.kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError(f"--kwargs: expected a JSON object, got {args.kwargs!r}")
        critic = build_critic(args.critic, kwargs)
        if args.checkpoint:
            load_checkpoint(critic, args.checkpoint, args.checkpoint_key)
        critic.to(args.device)
        if args.batches:
            source = load_object(args.batches, "--batches")
            if not callable(source):
                raise ValueError(f"--batches: {args.batches!r} is not callable")
            batches: Iterable[Any] = source()
        else:
            shape = tuple(int(v) for v in args.random_input.replace("x", ",").split(","))
            gen = torch.Generator().manual_seed(0)
            batches = (torch.randn(shape, generator=gen) for _ in range(args.max_batches))
        report = inspect_critic(
            critic, batches, targets=args.targets, exclude=args.exclude, threshold=args.threshold,
            max_batches=args.max_batches, gains=args.gain_from_sparsity or bool(args.gains_out), float64=args.float64,
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        print(f"{program_name()}: error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=1)
    if args.gains_out and report.gains is not None:
        with open(args.gains_out, "w") as f:
            json.dump(report.gains, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
