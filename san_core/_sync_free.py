"""The sync-free normalization step behind ``SAN(sync_free=True)`` (the default for CUDA weights).

After a warm-up call (which may sync: it checks the weights and sizes the per-layer plans), one whole-critic
step runs with fixed shapes and no host–device synchronisation: convs through :class:`StaticPlan`
(exact pruning with ``topk``), Linear/Embedding layers through :mod:`san_core._linear`, and a guard on the
device (``torch.where``) that leaves a layer unchanged when its weight or constant is not finite, counting the
event in :class:`~san_core._guard.DeviceFlags` for :meth:`SAN.check` to report. A layer's plan is rebuilt
(one more warm-up call) when its input size, weight shape, dtype or device, or the configuration, change.
Optionally the step is compiled (``torch.compile(fullgraph=True)``) or captured into a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import inf
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from . import _dft, _linear
from ._guard import DeviceFlags
from ._pruning import StaticPlan, build_plan
from ._reparam import InverseScale, raw_weight
from .spectrum import _compute_dtype, compensation_gain, conv_geometry, subset_size

#: The warm-up of a layer drawn with filter_ratio < 1 sizes its plan on a subset drawn with this seed.
PLAN_SEED = 0
#: A float32 layer with ``numel · max|w|`` above this is planned in float64 (its squared DFT could overflow float32).
FLOAT32_SAFE = 1e18


@dataclass
class _Entry:
    name: str
    key: tuple
    weight: Tensor
    scale: Optional[InverseScale]
    cdtype: torch.dtype
    factor: float  # g (compensation) × g_l (layer gain)
    plan: Optional[StaticPlan] = None  # convs (at the smallest recorded input size)
    more_plans: tuple[StaticPlan, ...] = ()  # one per further recorded input size: the constant is the max
    subset: int = 0  # ⌈m·n·r⌉ when filter_ratio < 1
    linear: str = ""  # "row"/"gram"/"power" (sync-free σ₁) or "sn" (linear_method="power")
    u: Optional[Tensor] = None


def _finite_each(weights: list[Tensor]) -> Tensor:
    """``(layers,)`` bool: no NaN/Inf in each weight. One fused max-norm on CUDA; per-weight ``aminmax`` elsewhere
    (CPU's max-norm is ~10x slower than ``aminmax``). NaN propagates through both."""
    if weights[0].device.type == "cuda":
        return torch.isfinite(torch.stack([n.float() for n in torch._foreach_norm(weights, inf)]))
    extremes = torch.stack([v.float() for w in weights for v in torch.aminmax(w)])  # callers hold no_grad
    return torch.isfinite(extremes).view(len(weights), 2).all(dim=1)


class SyncFreeEngine:
    """Per-layer static plans and the fixed-shape step of one :class:`SAN` (see the module docstring)."""

    def __init__(self, san: Any, *, compile_step: bool, cuda_graph: bool) -> None:
        self.san = san
        self.entries: dict[str, _Entry] = {}
        self.by_device: dict[torch.device, list[_Entry]] = {}
        self.counters: dict[torch.device, Tensor] = {}
        self.true: dict[torch.device, Tensor] = {}
        self.tied: list[list[str]] = []  # layers sharing one weight Parameter
        self.plan_sizes: dict[str, tuple[int, int]] = {}  # conv: (kernels evaluated on the full grid, total)
        self.flags = DeviceFlags()
        self.compile_step = compile_step
        self.cuda_graph = cuda_graph
        self._compiled: Optional[Callable[[list[Optional[Tensor]]], list[Tensor]]] = None
        self._graph: Any = None
        self._graph_out: list[Tensor] = []

    # ------------------------------------------------------------------------------------------ plans
    def _key(self, name: str) -> tuple:
        layer = self.san.layers[name]
        weight = raw_weight(layer)
        cfg = self.san.config
        return (
            tuple(self.san.sizes_of(name)), tuple(weight.shape), weight.dtype, weight.device, id(weight),
            weight.data_ptr(),  # storage swapped under the same Parameter (``p.data = …``): a captured graph is stale
            cfg["stride_mode"], cfg["filter_ratio"], cfg["gain"], cfg["method"], cfg["max_memory"],
            cfg["linear_method"], cfg["n_power_iter"], cfg["layer_gains"].get(name),
        )  # fmt: skip

    def stale(self) -> list[str]:
        """Layers whose plan is missing or out of date (the next call warms them up)."""
        return [n for n in self.san.layers if n not in self.entries or self.entries[n].key != self._key(n)]

    def prepare(self, names: list[str]) -> None:
        """Build the plans of ``names`` from the current weights (host syncs; weights must be finite)."""
        for name in names:
            entry = self.entries[name] = self._entry(name)
            if entry.plan is not None:
                self.plan_sizes[name] = (entry.plan.evaluated(), entry.plan.num_kernels)
        self.entries = {n: self.entries[n] for n in self.san.layers}  # layer order
        self.by_device = {}
        for entry in self.entries.values():
            self.by_device.setdefault(entry.weight.device, []).append(entry)
        self.counters = {d: self.flags.ensure(d, [e.name for e in es]) for d, es in self.by_device.items()}
        self.true = {d: torch.ones((), dtype=torch.bool, device=d) for d in self.by_device}
        by_weight: dict[int, list[str]] = {}
        for entry in self.entries.values():
            by_weight.setdefault(id(entry.weight), []).append(entry.name)
        self.tied = [names for names in by_weight.values() if len(names) > 1]
        self._compiled, self._graph, self._graph_out = None, None, []

    def _entry(self, name: str) -> _Entry:
        layer = self.san.layers[name]
        weight = raw_weight(layer)
        cfg = self.san.config
        cdtype = _compute_dtype(weight, "SAN")
        if cdtype == torch.float32 and weight.numel() * float(weight.detach().abs().amax()) > FLOAT32_SAFE:
            cdtype = torch.float64  # |DFT|² (≤ (Σ|w|)²) could overflow float32 (weights ~1e20)
        layer_gain = cfg["layer_gains"].get(name, 1.0)
        entry = _Entry(name, self._key(name), weight, self.san.scales.get(name), cdtype, layer_gain)
        if not isinstance(layer, nn.modules.conv._ConvNd):
            entry.linear = "sn" if cfg["linear_method"] == "power" else _linear.kind(tuple(weight.shape))
            if entry.linear == "power":
                m = min(weight.shape[0], weight[0].numel())
                entry.u = torch.ones(m, dtype=torch.float64, device=weight.device) / m**0.5
            return entry
        transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
        num_kernels = weight.shape[0] * weight.shape[1]
        kernels = weight.detach().reshape(num_kernels, -1).to(cdtype)
        ratio = cfg["filter_ratio"]
        if ratio < 1:
            entry.subset = subset_size(num_kernels, ratio)
            chosen = torch.randperm(num_kernels, generator=torch.Generator().manual_seed(PLAN_SEED))
            kernels = kernels[chosen[: entry.subset].to(kernels.device)]
        entry.factor *= compensation_gain(num_kernels, ratio) if cfg["gain"] is None else float(cfg["gain"])
        prune = cfg["method"] in ("auto", "pruned")
        plans = []
        for size in self.san.sizes_of(name):  # one plan per recorded input size
            grid, groups = conv_geometry(
                weight.shape[2:], size, layer.stride, layer.dilation, transposed, cfg["stride_mode"]
            )
            with _dft.exact_matmul(weight.device):
                exact = _dft.max_power(kernels, groups, grid, prune=True, max_memory=cfg["max_memory"])
                plans.append(build_plan(kernels, groups, grid, exact, cfg["max_memory"], prune=prune))
        entry.plan, entry.more_plans = plans[0], tuple(plans[1:])
        return entry

    def active(self) -> bool:
        choice = self.san.config["sync_free"]
        return any(raw_weight(m).device.type == "cuda" for m in self.san.layers.values()) if choice is None else choice

    def check(self) -> None:
        bad_weight, bad_constant = self.read_flags()
        where = "at a sync-free normalization; those layers were left unchanged"
        if bad_weight:
            raise ValueError(f"SAN: layers {bad_weight} had NaN/Inf weights {where}")
        if bad_constant:
            raise ValueError(f"SAN: NaN/Inf constant for layers {bad_constant} (overflow?) {where}")

    def pruning_stats(self) -> dict[str, dict[str, int]]:
        self.check()
        unverified = self.flags.unverified
        return {
            n: {"evaluated": e, "total": t, "unverified": unverified.get(n, 0)} for n, (e, t) in self.plan_sizes.items()
        }

    def read_flags(self) -> tuple[list[str], list[str]]:
        """One sync: layers with a NaN/Inf weight / constant since the last read. A layer whose pruning was
        unverified since then is re-planned (warm-up) at the next call."""
        before = dict(self.flags.unverified)
        bad = self.flags.read_all()
        for name in [n for n in self.entries if self.flags.unverified.get(n, 0) > before.get(n, 0)]:
            del self.entries[name]
        for name in bad[1]:  # a NaN/Inf constant (overflow?): re-planned, in float64 if the weights are huge
            self.entries.pop(name, None)
        return bad

    # ------------------------------------------------------------------------------------------- step
    def draw_subsets(self) -> list[Optional[Tensor]]:
        """The kernel subsets of this step, drawn on the host like the eager path (same generator, same order)."""
        out: list[Optional[Tensor]] = []
        for entry in self.entries.values():
            if not entry.subset:
                out.append(None)
                continue
            num = entry.weight.shape[0] * entry.weight.shape[1]
            chosen = torch.randperm(num, generator=self.san.generator)[: entry.subset]
            if entry.weight.device.type == "cuda":  # no pageable (blocking) host-to-device copy
                chosen = chosen.pin_memory().to(entry.weight.device, non_blocking=True)
            out.append(chosen)
        return out

    def core(self, subsets: list[Optional[Tensor]]) -> list[Tensor]:
        """Constants of every layer, and the guarded write; fixed shapes, no host sync."""
        values: dict[str, tuple[Tensor, Optional[Tensor]]] = {}
        with torch.no_grad():
            for entry, subset in zip(self.entries.values(), subsets):
                values[entry.name] = self._constant(entry, subset)
            for members in self.tied:  # one Parameter in several layers: divided once, by the largest constant
                shared = torch.stack([values[m][0] for m in members]).amax()
                values.update({m: (shared, values[m][1]) for m in members})
            for device, entries in self.by_device.items():
                self._guarded_write(entries, [values[e.name] for e in entries], self.counters[device])
        return [values[name][0] for name in self.entries]

    def _constant(self, entry: _Entry, subset: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        """``(constant, pruning verified)`` of one layer."""
        weight = entry.weight  # under no_grad: no detach needed
        if entry.plan is not None:
            kernels = weight.reshape(weight.shape[0] * weight.shape[1], -1)
            kernels = kernels if kernels.dtype == entry.cdtype else kernels.to(entry.cdtype)
            if subset is not None:
                kernels = kernels.index_select(0, subset)
            power, verified = entry.plan.max_power(kernels)  # a sum of squares: ≥ 0
            for plan in entry.more_plans:
                other, other_verified = plan.max_power(kernels)
                power = torch.maximum(power, other)
                if other_verified is not None:
                    verified = other_verified if verified is None else verified & other_verified
            constant = power.sqrt() if entry.factor == 1 else power.sqrt() * entry.factor
            return constant, verified
        if entry.linear == "sn":
            u = self.san.power_vectors[entry.name]
            n_iter = self.san.config["n_power_iter"]
            constant = _linear.power_sigma(weight, entry.cdtype, u, n_iter)
        else:
            constant = _linear.sigma(weight, entry.cdtype, entry.u)
        return (constant if entry.factor == 1 else constant * entry.factor), None

    def _guarded_write(
        self, entries: list[_Entry], values: list[tuple[Tensor, Optional[Tensor]]], counter: Tensor
    ) -> None:
        """Divide each weight by its constant (or set ``s``), except where the weight or constant is not finite;
        all layers of one device at once: a few stacked ops and one foreach division."""
        weights = [e.weight for e in entries]
        constants = torch.stack([c.to(torch.float32) if c.dtype != torch.float64 else c for c, _ in values])
        ok_weight = _finite_each(weights)
        ok_constant = torch.isfinite(constants)
        ok = ok_weight & ok_constant
        safe = torch.where(ok, constants.clamp_min(self.san.config["eps"]), torch.ones_like(constants))
        true = self.true[counter.device]
        verified = torch.stack([true if v is None else v for _, v in values])
        DeviceFlags.record(counter, ok_weight, ok_constant, verified)
        first = {id(w): i for i, w in reversed(list(enumerate(weights)))}
        rescale = [i for i, e in enumerate(entries) if e.scale is None and first[id(e.weight)] == i]
        if rescale:
            divisors = safe.unbind()
            torch._foreach_div_(
                [weights[i] for i in rescale],
                [divisors[i] if weights[i].dtype == safe.dtype else divisors[i].to(weights[i].dtype) for i in rescale],
            )
        for i, entry in enumerate(entries):
            if entry.scale is not None:
                entry.scale.s.copy_(torch.where(ok[i], safe[i].to(entry.scale.s.dtype), entry.scale.s))

    def step(self) -> dict[str, Tensor]:
        """One whole-critic normalization (the plans must be current: see :meth:`stale`)."""
        for entry in self.entries.values():
            if entry.linear == "sn" and entry.name not in self.san.power_vectors:
                self.san.power_vectors[entry.name] = torch.ones(
                    entry.weight.shape[0], dtype=entry.cdtype, device=entry.weight.device
                )
        device = next(iter(self.entries.values())).weight.device
        if self.cuda_graph and device.type != "cuda":
            raise RuntimeError(f"SAN: cuda_graph=True needs CUDA weights, got weights on {device}")
        subsets = self.draw_subsets()
        with _dft.exact_matmul(device):
            if self.cuda_graph:
                values = self._graph_step(subsets)
            elif self.compile_step:
                if self._compiled is None:
                    self._compiled = torch.compile(self.core, fullgraph=True)
                values = self._compiled(subsets)
            else:
                values = self.core(subsets)
        return dict(zip(self.entries, values))

    def _graph_step(self, subsets: list[Optional[Tensor]]) -> list[Tensor]:
        """Replay the captured step; capture it first (after this call's real step, run on a side stream)."""
        if self._graph is not None:
            self._graph.replay()
            return [c.clone() for c in self._graph_out]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            values = self.core(subsets)  # this call's normalization, and the warm-up capture needs
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._graph_out = self.core(subsets)  # recorded, not run
        self._graph = graph
        return values
