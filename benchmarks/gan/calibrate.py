"""The ``san-scaled`` ablation: SAN's critic with its output multiplied by a fixed scalar α chosen at initialization.

SAN divides each layer by ``‖W‖₀,∞`` (σ₁ for dense layers), a smaller constant than SN's σ₁ for the convs, so the
normalized critic's output is orders of magnitude larger than SN's at the same initial weights (issue 12 quotes
~3000×, the product of the per-layer constant ratios; the measured output ratio on the SNGAN CNN is ~246×,
``benchmarks/results/diagnosis_cpu``). With the hinge loss that matters through the margin only: Adam is
invariant to a constant factor on the loss, so ``D_α = α·D`` trained with margin 1 is ``D`` trained with margin
``1/α``. Here

    α = mean |D_SN(x)| / mean |D_SAN(x)|   on the fixed real probe images, both critics at their initial weights,

so ``san-scaled`` starts at SN's output scale (and saturates the hinge as SN does) while keeping SAN's
normalization. α is a buffer of the critic (``output_scale``): saved and restored with its ``state_dict``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BUFFER = "output_scale"


def _scale_output(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return output * getattr(module, BUFFER)


def install_output_scale(critic: nn.Module) -> None:
    """Registers ``output_scale`` (1 until :func:`calibrate` sets α) and a forward hook multiplying the output."""
    if hasattr(critic, BUFFER):
        raise ValueError(f"install_output_scale: the critic already has an attribute {BUFFER!r}")
    critic.register_buffer(BUFFER, torch.ones((), device=next(critic.parameters()).device))
    critic.register_forward_hook(_scale_output)


@torch.no_grad()
def _mean_abs(critic: nn.Module, probe: tuple[Tensor, ...]) -> float:
    flags = {m: m.training for m in critic.modules()}
    critic.eval()  # spectral norm's power iteration does not advance, SAN's state is not stepped
    try:
        return float(critic(*probe).abs().mean())
    finally:
        for m, flag in flags.items():
            m.training = flag


def sn_copy(initial_critic: nn.Module) -> nn.Module:
    """The SN baseline's critic at the same initial weights: ``spectral_norm`` on every Conv/Linear/Embedding (its
    15 power iterations at construction, as the ``sn`` treatment)."""
    import copy

    from .treatments import apply_sn  # (treatments imports this module)

    sn = copy.deepcopy(initial_critic)
    apply_sn(sn)
    return sn


def calibrate(critic: nn.Module, initial_critic: nn.Module, probe: tuple[Tensor, ...]) -> dict[str, float]:
    """Sets ``critic.output_scale`` to α (module docstring) and returns ``{"alpha", "d_real_sn", "d_real_san"}``
    (the two mean ``|D|`` before scaling). ``critic`` must carry :func:`install_output_scale`'s buffer."""
    if not hasattr(critic, BUFFER):
        raise ValueError("calibrate: the critic has no output_scale buffer (install_output_scale first)")
    getattr(critic, BUFFER).fill_(1.0)
    d_san = _mean_abs(critic, probe)
    dev = next(initial_critic.parameters()).device
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # SN's power-iteration vectors: from the global streams, not the run's
        d_sn = _mean_abs(sn_copy(initial_critic), probe)
    if not (d_san > 0 and d_sn > 0):
        raise ValueError(f"calibrate: expected positive mean |D| for both critics, got SAN {d_san}, SN {d_sn}")
    buffer = getattr(critic, BUFFER).fill_(d_sn / d_san)
    return {"alpha": float(buffer), "d_real_sn": d_sn, "d_real_san": d_san}  # α as stored (the buffer's dtype)
