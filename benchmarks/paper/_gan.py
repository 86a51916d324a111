"""Brief CIFAR-10 GAN training for the paper scripts: one init, several critic normalizations, cached critics.

Models, data, losses and the classifier-FID come from :mod:`benchmarks.gan`. All critic convs use
circular padding in every treatment (Lemma 1 and Sedghi et al. are exact under it), so treatments
differ only in the constant each layer is divided by:

- ``none``; ``sn``: ``torch.nn.utils.parametrizations.spectral_norm`` (Miyato: one power iteration on
  the reshaped matrix ``W_mat`` per forward);
- ``sn_reshaped``: ``W ← W / σ₁(W_mat)`` (exact SVD) after every critic step;
- ``sn_exact``: ``W ← W / σ₁(W)`` (the true operator norm) after every critic step: batched power
  iteration over the Sedghi matrices ``P(ω)`` with persistent vectors (a lower bound of σ₁ that
  tracks it; checked against :func:`san_core.diagnostics.conv_singular_value` at the end);
- ``san``: :func:`san_core.apply_san`, ``W ← W / ‖W‖₀,∞`` after every critic step.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor, nn

import san_core
from benchmarks import _measure as M
from benchmarks.gan import data as gdata
from benchmarks.gan.losses import d_hinge, g_hinge
from benchmarks.gan.models_cnn import CNNCritic, CNNGenerator
from benchmarks.gan.models_resnet import ResNetCritic
from san_core.diagnostics import conv_frequency_matrices, conv_singular_value, sn_estimate

TREATMENTS = ("none", "sn", "sn_reshaped", "sn_exact", "san")
CACHE = gdata.REPO / ".data" / "paper"


@dataclass
class GanConfig:
    critic: str = "cnn"  # "cnn" (SNGAN standard CNN) or "resnet" (SNGAN ResNet critic)
    d_ch: int = 32
    g_ch: int = 64
    batch: int = 32
    steps: int = 100
    loss: str = "hinge"  # or "wgan"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    seed: int = 0
    data: Optional[str] = None  # None: the shared CIFAR-10 tarball; "fake:N" for tests
    eval_every: int = 0
    eval_n: int = 500
    extra: dict = field(default_factory=dict)

    def key(self, treatment: str) -> str:
        return hashlib.sha1(json.dumps([asdict(self), treatment], sort_keys=True).encode()).hexdigest()[:12]


def make_models(cfg: GanConfig) -> tuple[nn.Module, nn.Module]:
    """Generator and critic from ``cfg.seed`` (identical init across treatments); critic convs circular."""
    torch.manual_seed(cfg.seed)
    gen = CNNGenerator(ch=cfg.g_ch)
    critic = CNNCritic(ch=cfg.d_ch) if cfg.critic == "cnn" else ResNetCritic(ch=cfg.d_ch)
    san_core.to_circular_padding_(critic)
    return gen, critic


class ExactSigma:
    """Persistent batched power iteration on the Sedghi matrices of one conv (per-frequency vectors)."""

    def __init__(self, conv: nn.Conv2d, size: tuple[int, ...]) -> None:
        self.conv, self.size, self.v = conv, size, None

    def __call__(self, n_iter: int = 1) -> Tensor:
        c = self.conv
        p = conv_frequency_matrices(c.weight.detach(), self.size, c.stride, dilation=c.dilation, groups=c.groups)
        if self.v is None:
            gen = torch.Generator().manual_seed(0)
            self.v = torch.randn(p.shape[0], p.shape[1], p.shape[3], 1, generator=gen, dtype=p.dtype)
            n_iter = max(n_iter, 30)
        v = self.v
        for _ in range(n_iter):
            v = p.mH @ (p @ v)
            v = v / torch.linalg.vector_norm(v, dim=(2, 3), keepdim=True).clamp_min(1e-30)
        self.v = v
        return torch.linalg.vector_norm(p @ v, dim=(2, 3)).amax()


class Treatment:
    """Installs one normalization on the critic; ``after_step()`` runs after every critic optimizer step."""

    def __init__(self, name: str, critic: nn.Module, example: Tensor) -> None:
        if name not in TREATMENTS:
            raise ValueError(f"treatment: expected one of {TREATMENTS}, got {name!r}")
        self.name, self.critic, self.san = name, critic, None
        layers = [(n, m) for n, m in critic.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        sizes: dict[str, tuple[int, ...]] = {}
        hooks = [m.register_forward_pre_hook(_size_hook(sizes, n)) for n, m in layers]
        with torch.no_grad():
            critic(example)
        for h in hooks:
            h.remove()
        self.layers, self.sizes = layers, sizes
        self.trackers = {n: ExactSigma(m, sizes[n]) for n, m in layers if isinstance(m, nn.Conv2d)}
        if name == "sn":
            for _, m in layers:
                torch.nn.utils.parametrizations.spectral_norm(m)
        elif name == "san":
            sizes_conv = {n: sizes[n] for n, _ in layers if n in self.trackers}
            self.san = san_core.apply_san(critic, circular_padding=False, input_sizes=sizes_conv)  # already circular
        self.after_step()

    def constant(self, name: str, m: nn.Module) -> Tensor:
        if isinstance(m, nn.Linear) or self.name == "sn_reshaped":
            return sn_estimate(m.weight)
        return self.trackers[name]()

    @torch.no_grad()
    def after_step(self) -> None:
        if self.san is not None:
            self.san.normalize_()
        elif self.name in ("sn_reshaped", "sn_exact"):
            for n, m in self.layers:
                m.weight.div_(self.constant(n, m).clamp_min(1e-12).to(m.weight.dtype))

    @torch.no_grad()
    def report(self) -> list[dict]:
        """Per layer of the (effective) critic weights: SN estimate, exact σ₁, SAN constant."""
        rows = []
        for n, m in self.layers:
            w = m.weight.detach()
            if isinstance(m, nn.Linear):
                s = float(sn_estimate(w))
                rows.append({"layer": n, "sn": s, "exact": s, "san": s, "tracked": s})
                continue
            size = self.sizes[n]
            rows.append(
                {
                    "layer": n, "sn": float(sn_estimate(w)),
                    "exact": float(conv_singular_value(w, size, m.stride)),
                    "san": float(san_core.conv_constant(w, size, stride=m.stride)),
                    "tracked": float(self.trackers[n](n_iter=5)),
                }
            )  # fmt: skip
        return rows


def _size_hook(sizes: dict, name: str) -> Callable:
    def hook(module: nn.Module, args: tuple) -> None:
        if isinstance(module, nn.Conv2d):
            sizes[name] = tuple(args[0].shape[-2:])

    return hook


def train(cfg: GanConfig, treatment: str, on_eval: Optional[Callable[[int, nn.Module], dict]] = None) -> dict:
    """Train G and D for ``cfg.steps`` (one D step per G step); returns the history and the trained models."""
    images = gdata.load_cifar10(cfg.data)
    gen, critic = make_models(cfg)
    sampler = gdata.Sampler(len(images), cfg.batch, cfg.seed)
    example, _ = images.batch(sampler.next(), torch.device("cpu"))
    norm = Treatment(treatment, critic, example)
    opt_d = torch.optim.Adam(critic.parameters(), cfg.lr, betas=cfg.betas)
    opt_g = torch.optim.Adam(gen.parameters(), cfg.lr, betas=cfg.betas)
    zgen = torch.Generator().manual_seed(cfg.seed + 1)
    hist: dict[str, list] = {"step": [], "d_loss": [], "g_loss": [], "d_real": [], "d_fake": [], "evals": []}
    start = time.perf_counter()
    progress = M.Progress(cfg.steps)
    for step in range(1, cfg.steps + 1):
        progress.step(f"{cfg.critic} critic, {treatment}")
        real, _ = images.batch(sampler.next(), torch.device("cpu"))
        fake = gen(torch.randn(cfg.batch, gen.z_dim, generator=zgen))
        out_r, out_f = critic(real), critic(fake.detach())
        d_loss = d_hinge(out_r, out_f) if cfg.loss == "hinge" else out_f.mean() - out_r.mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        norm.after_step()
        g_loss = g_hinge(critic(gen(torch.randn(cfg.batch, gen.z_dim, generator=zgen))))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        hist["step"].append(step)
        for k, v in (("d_loss", d_loss), ("g_loss", g_loss), ("d_real", out_r.mean()), ("d_fake", out_f.mean())):
            hist[k].append(float(v.detach()))
        if on_eval is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            hist["evals"].append({"step": step, **on_eval(step, gen)})
    progress.close()
    hist["seconds"] = time.perf_counter() - start
    return {"history": hist, "generator": gen, "critic": critic, "treatment": norm}


def cached_critic(cfg: GanConfig, treatment: str, cache: Optional[Path] = None) -> tuple[nn.Module, dict]:
    """A critic trained by :func:`train` (cached as ``<cache or CACHE>/critic-<key>.pt``), and its history."""
    cache = CACHE if cache is None else cache
    path = cache / f"critic-{cfg.key(treatment)}.pt"
    _, critic = make_models(cfg)
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        critic.load_state_dict(saved["state_dict"])
        return critic, saved["history"]
    out = train(cfg, treatment)
    trained = out["critic"]
    if treatment == "sn":  # store the effective weights of a plain critic
        for m in trained.modules():
            if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
                torch.nn.utils.parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    if out["treatment"].san is not None:
        out["treatment"].san.remove()  # convs were circular before apply_san: they stay circular
    critic.load_state_dict(trained.state_dict())
    cache.mkdir(parents=True, exist_ok=True)
    hist = {k: v for k, v in out["history"].items() if k != "evals"}
    torch.save({"state_dict": critic.state_dict(), "history": hist, "config": asdict(cfg)}, path)
    return critic, hist
