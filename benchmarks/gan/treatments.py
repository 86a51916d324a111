"""Critic treatments compared side by side: none, spectral norm, WGAN-GP, SAN (every step / every N / subset r /
per-layer gains from measured sparsity).

A treatment is written ``name`` or ``name:K`` (``K`` critic steps per generator step, default 1), e.g. ``sn:5``
for the SN baseline's usual five. Everything else (data, seeds, models, losses, optimizer, step budget) is
shared; the treatment only changes the critic (and, for GP, adds ``λ·E[(‖∇D(x̂)‖ − 1)²]`` to its hinge loss).
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

import san_core

from .calibrate import install_output_scale

NORMALIZED_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


@dataclass(frozen=True)
class Treatment:
    """``kind``: none/sn/gp/san/circular; ``n_dis`` critic steps per G step; SAN's ``interval``, ``filter_ratio`` r;
    ``sparsity_gains``: SAN's per-layer gains ``g_l`` re-measured from real images at every evaluation; ``form``:
    SAN's ``"rescale"`` (W ← W/c in place) or the authors' ``"reparametrize"`` (forward uses W/s).

    Diagnosis ablations (issue 12: why does SAN collapse?): ``calibrate_output``: the critic's output is multiplied
    by a fixed scalar α chosen at initialization so that its mean ``|D(x)|`` on the real probe images equals the SN
    critic's with the same initial weights (:mod:`benchmarks.gan.calibrate`; with Adam this is the hinge margin
    moved from 1 to 1/α); ``d_lr_scale``: the critic's Adam learning rate is the setup's times this; ``loss``:
    ``"hinge"`` or ``"ns"`` (the non-saturating loss, :mod:`benchmarks.gan.losses`); ``cuda_graph``: SAN's
    sync-free step replayed from a CUDA graph (speed only; CUDA weights)."""

    key: str
    label: str
    kind: str
    n_dis: int = 1
    interval: int = 1
    filter_ratio: float = 1.0
    gp_weight: float = 10.0
    sparsity_gains: bool = False
    form: str = "rescale"
    calibrate_output: bool = False
    d_lr_scale: float = 1.0
    loss: str = "hinge"
    cuda_graph: bool = False


BASE = {
    "none": Treatment("none", "none", "none"),
    "sn": Treatment("sn", "SN", "sn"),
    "gp": Treatment("gp", "WGAN-GP (λ=10)", "gp"),
    "san": Treatment("san", "SAN", "san"),
    "san-every100": Treatment("san-every100", "SAN every 100", "san", interval=100),
    "san-r25": Treatment("san-r25", "SAN r=0.25 (Eq. 9 g)", "san", filter_ratio=0.25),
    # The authors' released form (kligvasser/SANGAN sparse.py): forward with W / s, s recomputed after each step.
    "san-reparam": Treatment("san-reparam", "SAN reparametrized (W/s)", "san", form="reparametrize"),
    # The sync-free step captured into a CUDA graph (SAN(cuda_graph=True)): one replay per normalization; CUDA only.
    "san-graph": Treatment("san-graph", "SAN, CUDA graph", "san", cuda_graph=True),
    # Beyond the paper (its future-work idea): g_l = clip(√(ρ_l/ρ_min), 1, σ₁/‖W‖₀,∞), ρ = effective density.
    "san-gains": Treatment("san-gains", "SAN + sparsity gains (experimental)", "san", sparsity_gains=True),
    # Diagnosis ablations (issue 12), each testing one explanation of SAN's collapse; SN is never changed.
    # Scale at init / hinge saturation: D's output × α (fixed at init) so that mean |D(real)| equals SN's there.
    "san-scaled": Treatment("san-scaled", "SAN, output × α (SN's scale at init)", "san", calibrate_output=True),
    # Learning rate: the critic's Adam lr ÷ 4 (5e-5), G's unchanged.
    "san-lr": Treatment("san-lr", "SAN, D lr ÷ 4", "san", d_lr_scale=0.25),
    # Loss: the non-saturating loss instead of the hinge (its critic term saturates too, its G term differently).
    "san-ns": Treatment("san-ns", "SAN, non-saturating loss", "san", loss="ns"),
    "sn-ns": Treatment("sn-ns", "SN, non-saturating loss", "sn", loss="ns"),
    # Not a normalization: SAN's circular padding alone, to tell its cost apart from the rescale's.
    "circular": Treatment("circular", "circular padding only", "circular"),
}
DEFAULT = ["none", "sn", "gp", "san", "san-every100", "san-r25", "san-gains"]


def parse_treatment(spec: str) -> Treatment:
    """``"sn"`` → SN with 1 critic step per G step; ``"sn:5"`` → 5 (key ``sn-5d``, label ``SN, 5 D steps``)."""
    name, _, k = spec.partition(":")
    if name not in BASE:
        raise ValueError(f"treatment: expected one of {sorted(BASE)} (optionally ':K' critic steps), got {spec!r}")
    if not k:
        return BASE[name]
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"treatment {spec!r}: expected ':K' with K a positive int, got {k!r}")
    base = BASE[name]
    n = int(k)
    if n == 1:
        return base
    return dataclasses.replace(base, key=f"{base.key}-{n}d", label=f"{base.label}, {n} D steps", n_dis=n)


@dataclass
class AppliedTreatment:
    """The treatment installed on one critic: the SAN object when there is one, and conv input sizes."""

    treatment: Treatment
    critic: nn.Module
    san: Optional[san_core.SAN] = None
    input_sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    initial_critic: Optional[nn.Module] = None  # ``calibrate_output``: the critic's initial weights, untreated

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        if self.san is not None:
            self.san.attach(optimizer)

    def normalized_this_step(self) -> bool:
        """True when the last ``optimizer.step()`` rescaled the weights (SAN only)."""
        return self.san is not None and self.san.calls > 0 and self.san.calls % self.treatment.interval == 0

    def san_constants(self) -> dict[str, float]:
        """The constants SAN divided by at its last normalization (before the rescale)."""
        return {} if self.san is None else {k: float(v) for k, v in self.san.last_constants.items()}

    @torch.no_grad()
    def effective_constants(self) -> dict[str, float]:
        """``‖W‖₀,∞`` of each conv's *effective* weight (after SN, if any) on its input size; σ₁ for dense layers.

        Computed in eval mode so spectral norm's power iteration does not advance.
        """
        flags = {m: m.training for m in self.critic.modules()}
        self.critic.eval()
        try:
            out = {}
            for name, layer in self.critic.named_modules():
                if isinstance(layer, nn.Conv2d) and name in self.input_sizes:
                    c = san_core.conv_constant(layer.weight, self.input_sizes[name], stride=layer.stride,
                                               dilation=layer.dilation, groups=layer.groups)  # fmt: skip
                    out[name] = float(c)
                elif isinstance(layer, (nn.Linear, nn.Embedding)):
                    out[name] = float(san_core.linear_constant(layer.weight))
            return out
        finally:
            for m, flag in flags.items():
                m.training = flag

    def refresh_gains(self, batch: tuple[Tensor, ...]) -> Optional[dict[str, Any]]:
        """``sparsity_gains`` only: measure each hidden conv's effective input density on ``batch`` (real images),
        set ``g_l`` (``san_core.inspect_critic(..., gains=True)``) and rescale at once; returns what was measured."""
        if self.san is None or not self.treatment.sparsity_gains:
            return None
        report = san_core.inspect_critic(self.critic, [batch], gains=True)
        gains = report.gains or {}
        self.san.set_layer_gains(gains)
        self.san.normalize_(force=True)
        density = {r.name: r.effective_density for r in report.layers if r.effective_density is not None}
        return {"gains": gains, "effective_density": density}

    def state_dict(self) -> dict[str, Any]:
        return {} if self.san is None else self.san.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.san is not None:
            self.san.load_state_dict(state)


def _input_sizes(critic: nn.Module, example: tuple) -> dict[str, tuple[int, ...]]:
    sizes: dict[str, tuple[int, ...]] = {}
    handles = [
        m.register_forward_pre_hook(lambda mod, args, _n=name: sizes.__setitem__(_n, tuple(args[0].shape[2:])))
        for name, m in critic.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    flags = {m: m.training for m in critic.modules()}
    try:
        critic.eval()
        with torch.no_grad():
            critic(*example)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    return sizes


def apply_sn(critic: nn.Module, targets: Optional[tuple[str, ...]] = None) -> None:
    """The ``sn`` treatment: ``torch.nn.utils.parametrizations.spectral_norm`` on every Conv/Linear/Embedding (those
    matching ``targets``' glob patterns when given), in place."""
    for name, layer in list(critic.named_modules()):
        if isinstance(layer, NORMALIZED_TYPES) and (
            targets is None or any(fnmatch.fnmatchcase(name, p) for p in targets)
        ):
            parametrizations.spectral_norm(layer)


def apply_treatment(
    treatment: Treatment, critic: nn.Module, example: tuple, seed: int = 0, targets: Optional[tuple[str, ...]] = None
) -> AppliedTreatment:
    """Install ``treatment`` on ``critic`` in place (``example`` = positional args of one forward pass).

    - ``sn``: ``torch.nn.utils.parametrizations.spectral_norm`` on every Conv/Linear/Embedding (one power
      iteration per training forward, as Miyato et al.).
    - ``san``: ``san_core.apply_san`` on every Conv/Linear/Embedding (circular padding, constants on each
      conv's input size), normalized once before its first use and then after every ``interval``-th critic
      ``optimizer.step()`` via ``SAN.attach``.
    - ``circular``: only SAN's switch to circular padding (``san_core.to_circular_padding_``), no normalization.
    - ``none`` / ``gp``: the critic is left as it is (GP acts in the loss).

    ``targets``: glob patterns on layer names (``san_core`` targets) limiting SN, SAN and the padding switch to
    those layers (e.g. the U-Net critic's ``conv[1-8]``, as upstream); default every Conv/Linear/Embedding.
    """
    applied = AppliedTreatment(treatment, critic)
    if treatment.calibrate_output:
        applied.initial_critic = copy.deepcopy(critic)
    if treatment.kind == "sn":
        apply_sn(critic, targets)
    elif treatment.kind == "san":
        extra = {}
        if treatment.form != "rescale":
            if not supports_form():
                raise ValueError(f"treatment {treatment.key!r}: this san_core's SAN has no form= option (needs "
                                 "form='reparametrize')")  # fmt: skip
            extra["form"] = treatment.form
        if treatment.cuda_graph:
            extra["cuda_graph"] = True
        applied.san = san_core.apply_san(
            critic, targets, interval=treatment.interval, filter_ratio=treatment.filter_ratio, seed=seed,
            example_input=example, normalize_at_first_forward=True, **extra,
        )  # fmt: skip
    elif treatment.kind == "circular":
        san_core.to_circular_padding_(critic, targets)
    elif treatment.kind not in ("none", "gp"):
        raise ValueError(f"treatment kind: expected none/sn/gp/san/circular, got {treatment.kind!r}")
    applied.input_sizes = _input_sizes(critic, example)
    if treatment.calibrate_output:
        install_output_scale(critic)
    return applied


def supports_form() -> bool:
    """Whether ``san_core.SAN`` takes ``form=`` (the reparametrized form)."""
    return "form" in inspect.signature(san_core.SAN).parameters


def critic_example(batch: int, size: int, num_classes: int, device: torch.device) -> tuple[Tensor, ...]:
    x = torch.zeros(batch, 3, size, size, device=device)
    return (x, torch.zeros(batch, dtype=torch.long, device=device)) if num_classes else (x,)
