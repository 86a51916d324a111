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
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from . import _dft, _linear
from ._guard import DeviceFlags, guard
from ._reparam import InverseScale, raw_weight
from ._static_plan import StaticPlan, build_plan
from ._tail import Pieces, Tail, build_tail, combine
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
    kernels: Optional[Tensor] = None  # a (kernels, taps) view of a contiguous conv weight (no reshape per step)


def _explicit(plan: StaticPlan, lo: Optional[Tensor]) -> Optional[Tensor]:
    """``lo · inflate`` of one plan (``None``: nothing dropped)."""
    return None if lo is None else lo * plan.inflate


def _tail(device: torch.device, entries: list[_Entry]) -> Tail:
    inflate = [e.plan.inflate if e.plan is not None and not e.more_plans else 1.0 for e in entries]
    return build_tail(device, [e.cdtype for e in entries], inflate, [e.factor for e in entries],
                      [id(e.weight) for e in entries])  # fmt: skip


class SyncFreeEngine:
    """Per-layer static plans and the fixed-shape step of one :class:`SAN` (see the module docstring)."""

    def __init__(self, san: Any, *, compile_step: bool, cuda_graph: bool) -> None:
        self.san = san
        self.entries: dict[str, _Entry] = {}
        self.by_device: dict[torch.device, list[_Entry]] = {}
        self.counters: dict[torch.device, Tensor] = {}
        self.tails: dict[torch.device, Tail] = {}
        self.plan_sizes: dict[str, tuple[int, int]] = {}  # conv: (kernels evaluated on the full grid, total)
        self.flags = DeviceFlags()
        self.compile_step = compile_step
        self.cuda_graph = cuda_graph
        self._compiled: Optional[Callable[[list[Optional[Tensor]]], list[Tensor]]] = None
        self._graph: Any = None
        self._graph_out: list[Tensor] = []
        self._graph_subsets: list[Optional[Tensor]] = []  # the captured step's index buffers, refilled per replay

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
        self.tails = {d: _tail(d, es) for d, es in self.by_device.items()}
        self._compiled, self._graph, self._graph_out, self._graph_subsets = None, None, [], []

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
        if weight.is_contiguous() and not self.compile_step:  # (compile refuses inputs aliasing a parameter)
            entry.kernels = weight.detach().view(num_kernels, -1)  # shares the storage: sees in-place updates
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
    def draw_subsets(self, *, on_host: bool = False) -> list[Optional[Tensor]]:
        """The kernel subsets of this step, drawn on the host like the eager path (same generator, same order).

        A CUDA layer's subset is moved to its device without blocking (from pinned memory); ``on_host=True`` leaves
        it in pinned host memory, for a graph replay that copies it straight into its captured index buffer."""
        out: list[Optional[Tensor]] = []
        for entry in self.entries.values():
            if not entry.subset:
                out.append(None)
                continue
            num = entry.weight.shape[0] * entry.weight.shape[1]
            chosen = torch.randperm(num, generator=self.san.generator)[: entry.subset]
            if entry.weight.device.type == "cuda":  # no pageable (blocking) host-to-device copy
                chosen = chosen.pin_memory()
                if not on_host:
                    chosen = chosen.to(entry.weight.device, non_blocking=True)
            out.append(chosen)
        return out

    def core(self, subsets: list[Optional[Tensor]]) -> list[Tensor]:
        """Constants of every layer, and the guarded write; fixed shapes, no host sync."""
        constants: dict[str, Tensor] = {}
        with torch.no_grad():
            pieces = {e.name: self._pieces(e, s) for e, s in zip(self.entries.values(), subsets)}
            for device, entries in self.by_device.items():
                values = self._guarded_write(entries, [pieces[e.name] for e in entries], device)
                constants.update(zip([e.name for e in entries], values))
        return [constants[name] for name in self.entries]

    def _pieces(self, entry: _Entry, subset: Optional[Tensor]) -> Pieces:
        """``(amp, lo)`` of one layer: its constant is ``max(amp, lo · inflate)`` times its factor (``lo`` ``None``:
        the constant is ``amp``)."""
        weight = entry.weight  # under no_grad: no detach needed
        if entry.plan is not None:
            kernels = entry.kernels
            if kernels is None:
                kernels = weight.reshape(weight.shape[0] * weight.shape[1], -1)
            kernels = kernels if kernels.dtype == entry.cdtype else kernels.to(entry.cdtype)
            if subset is not None:
                kernels = kernels.index_select(0, subset)
            amp, lo = entry.plan.max_amplitude(kernels)
            if not entry.more_plans:
                return amp, lo
            bound = _explicit(entry.plan, lo)  # explicit: this layer's inflate entry is 1
            for plan in entry.more_plans:  # one per further recorded input size: the constant is the max
                other, other_lo = plan.max_amplitude(kernels)
                amp = torch.maximum(amp, other)
                other_bound = _explicit(plan, other_lo)
                if other_bound is not None:
                    bound = other_bound if bound is None else torch.maximum(bound, other_bound)
            return amp, bound
        if entry.linear == "sn":
            u = self.san.power_vectors[entry.name]
            n_iter = self.san.config["n_power_iter"]
            return _linear.power_sigma(weight, entry.cdtype, u, n_iter), None
        return _linear.sigma(weight, entry.cdtype, entry.u), None

    def _guarded_write(self, entries: list[_Entry], pieces: list[Pieces], device: torch.device) -> list[Tensor]:
        """The constants of one device's layers (batched), and the guarded write of each weight (or ``s``)."""
        tail = self.tails[device]
        constants, unverified = combine(tail, pieces)
        weights = [e.weight for e in entries]
        bad, safe = guard(tail, weights, constants, unverified, self.counters[device], self.san.config["eps"])
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
                entry.scale.s.copy_(torch.where(bad[i], entry.scale.s, safe[i].to(entry.scale.s.dtype)))
        return list(constants.unbind())

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
        subsets = self.draw_subsets(on_host=self.cuda_graph and self._graph is not None)  # a replay: one copy each
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
        """Replay the captured step; capture it first (after this call's real step, run on a side stream).

        Kernel subsets (``filter_ratio < 1``) are drawn on the host as on every path (same generator, same order)
        and, for a replay, copied from pinned memory on the current stream straight into the fixed index buffers
        the graph reads (one host-to-device copy per subset): a replay sees this step's subsets, and the draws
        equal the eager path's."""
        if self._graph is not None:
            for static, new in zip(self._graph_subsets, subsets):
                if static is not None and new is not None:
                    static.copy_(new, non_blocking=True)
            self._graph.replay()
            return [c.clone() for c in self._graph_out]
        static_subsets = [None if s is None else s.clone() for s in subsets]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            values = self.core(subsets)  # this call's normalization, and the warm-up capture needs
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._graph_out = self.core(static_subsets)  # recorded, not run
        self._graph, self._graph_subsets = graph, static_subsets
        return values
