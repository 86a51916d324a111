"""``python -m san_core.inspect``: per critic layer, SN's estimate vs exact σ₁ vs SAN's ‖W‖₀,∞, and input sparsity.

Example::

    python -m san_core.inspect --critic mypkg.models:Critic --kwargs '{"ch": 128}' \\
        --checkpoint D.pt --batches mypkg.data:real_batches --gain-from-sparsity --gains-out gains.json

``--batches module:callable`` is called with no arguments and must return an iterable of batches; a
tensor is passed as ``critic(x)``, a tuple/list as ``critic(*batch)``, a dict as ``critic(**batch)``.
Sparsity is a property of the data: use real images and a trained critic (random inputs or a fresh
critic measure something else). The recommendation follows the paper's Limitations (SAN helps when
features are channel-sparse); its thresholds are this tool's heuristics, not the paper's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .diagnostics import conv_singular_value, gain_from_sparsity, sn_estimate
from .normalizer import SAN, apply_san
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
            "of input | notes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.layers:
            ratio = r.exact_sigma / r.sn_estimate if r.exact_sigma and r.sn_estimate else None
            size = "×".join(map(str, r.input_size)) if r.input_size else "—"
            zeros = "—" if r.zero_fraction is None else f"{100 * r.zero_fraction:.1f} %"
            cells = [r.name, r.type, size, num(r.sn_estimate), num(r.exact_sigma), num(r.san_constant)]
            rows.append("| " + " | ".join([*cells, num(ratio, ".2f"), zeros, "; ".join(r.notes)]) + " |")
        text = "\n".join(rows) + f"\n\nRecommendation: {self.recommendation}\n"
        if self.gains is not None:
            text += "\nPer-layer gains (EXPERIMENTAL heuristic, see san_core.diagnostics.gain_from_sparsity):\n"
            text += json.dumps(self.gains, indent=1) + "\n"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(r) for r in self.layers], "recommendation": self.recommendation, "gains": self.gains}


def load_object(spec: str, what: str) -> Any:
    """``"package.module:attr"`` (``attr`` may be dotted) → the object; one clear error otherwise."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"{what}: expected 'package.module:name', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what}: cannot import module {module_name!r} ({exc}); is it on PYTHONPATH?") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))[:12]
            raise ValueError(f"{what}: {module_name!r} has no attribute {attr!r}; it has e.g. {public}")
        obj = getattr(obj, part)
    return obj


def build_critic(spec: str, kwargs: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """An ``nn.Module`` instance named by ``spec``, or a class/factory called with ``kwargs``."""
    obj = load_object(spec, "--critic")
    if isinstance(obj, nn.Module):
        if kwargs:
            raise ValueError(f"--critic: {spec!r} is already a module instance; --kwargs cannot apply")
        return obj
    if not callable(obj):
        raise ValueError(f"--critic: expected an nn.Module, class or factory at {spec!r}, got {type(obj).__name__}")
    critic = obj(**dict(kwargs or {}))
    if not isinstance(critic, nn.Module):
        raise ValueError(f"--critic: {spec!r}(**kwargs) returned {type(critic).__name__}, expected an nn.Module")
    return critic


def load_checkpoint(critic: nn.Module, path: str, key: Optional[str] = None) -> None:
    """Load a state dict (or a dict holding one under ``key``/``state_dict``/``model``), ``module.`` stripped."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ValueError(f"--checkpoint: no file {path!r}") from exc
    state = ckpt
    if isinstance(ckpt, dict):
        for k in [key] if key else ["state_dict", "model", "netD", "discriminator"]:
            if k in ckpt and isinstance(ckpt[k], dict):
                state = ckpt[k]
                break
        else:
            if key:
                raise ValueError(f"--checkpoint: {path!r} has no key {key!r}; keys: {sorted(ckpt)[:12]}")
    if not isinstance(state, dict):
        raise ValueError(f"--checkpoint: expected a state dict in {path!r}, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        missing, unexpected = critic.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"--checkpoint: {path!r} does not fit the critic: {exc}") from exc
    if missing or unexpected:
        raise ValueError(
            f"--checkpoint: {path!r} does not fit the critic: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )


def _move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return [_move(v, device) if isinstance(v, Tensor) else v for v in batch]
    if isinstance(batch, dict):
        return {k: _move(v, device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    raise TypeError(f"batches: expected a Tensor, tuple/list or dict per batch, got {type(batch).__name__}")


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
                batch = _move(batch, device)
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
    usable = [r for r in _hidden_convs(layers) if r.zero_fraction is not None and r.zero_fraction < 1]
    density = {r.name: 1.0 - float(r.zero_fraction or 0.0) for r in usable}
    caps = {r.name: r.exact_sigma / r.san_constant for r in usable if r.exact_sigma and r.san_constant}
    return gain_from_sparsity(density, caps)


def apply_san_with_gains(
    module: nn.Module,
    gains: Mapping[str, float],
    targets: Patterns = None,
    *,
    exclude: Patterns = None,
    **san_kwargs: Any,
) -> list[SAN]:
    """:func:`apply_san` once per distinct gain in ``gains`` (``{layer: g}``, e.g. from ``--gains-out``).

    The other selected layers get one more :func:`apply_san` with the default gain. Normalize with every
    returned ``SAN`` (``.normalize_()`` / ``.attach(opt)`` each); on error everything is undone.
    """
    by_gain: dict[float, list[str]] = {}
    for name, g in gains.items():
        by_gain.setdefault(float(g), []).append(name)
    others = [n for n in select_layers(module, targets, exclude=exclude).matched if n not in gains]
    made: list[SAN] = []
    try:
        for g, names in by_gain.items():
            made.append(apply_san(module, names, gain=g, **san_kwargs))
        if others:
            made.append(apply_san(module, others, **san_kwargs))
    except BaseException:
        for san in reversed(made):
            san.remove()
        raise
    return made


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m san_core.inspect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
        print(f"error: {exc}", file=sys.stderr)
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
