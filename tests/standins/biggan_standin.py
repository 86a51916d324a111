"""A tiny stand-in for BigGAN-PyTorch, written from scratch for CI (no checkout needed).

It is built the way BigGAN-PyTorch builds its models, which is what the adapter depends on:

- class-style SN layers (``SNConv2d``/``SNLinear``/``SNEmbedding``: the layer owns ``u0``/``sv0``
  buffers and divides its raw ``weight`` by a power-iteration ``σ`` inside ``forward``), reached by
  the model code as attributes of a module object named ``layers``;
- ``Discriminator.__init__`` makes ``functools.partial(layers.SNConv2d, ...)`` only when
  ``D_param == 'SN'``, builds its blocks with them and creates ``self.optim`` itself (an Adam, or an
  fp32-master-copy Adam like BigGAN's ``Adam16`` when ``D_mixed_precision``);
- ``prepare_parser()``, ``save_weights``/``load_weights`` and ``run(config)`` mimic ``utils.*`` /
  ``train.run`` (files ``<root>/<experiment>/<name>[_<suffix>].pth``; ``run`` reaches them as ``utils.*``
  and resumes with ``--resume``) so that a fake checkout made of one-line files can drive the launcher.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import os
import types
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

layers = types.ModuleType(__name__ + ".layers", "SN layers, reached as layers.SNConv2d etc. like BigGAN.py does")
RUNS: list[dict[str, Any]] = []  # what each run(config) built and measured


class SN:
    """Mixin: power-iteration spectral norm kept in buffers ``u{i}`` (1, out) and ``sv{i}`` (1,)."""

    weight: Tensor

    def _init_sn(self, num_svs: int, num_itrs: int, num_outputs: int, eps: float) -> None:
        self.num_svs, self.num_itrs, self.eps = num_svs, num_itrs, eps
        for i in range(num_svs):
            self.register_buffer(f"u{i}", F.normalize(torch.randn(1, num_outputs), dim=1))  # type: ignore[attr-defined]
            self.register_buffer(f"sv{i}", torch.ones(1))  # type: ignore[attr-defined]

    def sn_weight(self) -> Tensor:
        mat = self.weight.reshape(self.weight.shape[0], -1)
        with torch.no_grad():
            u = self.u0
            for _ in range(self.num_itrs):
                v = F.normalize(u @ mat, dim=1, eps=self.eps)
                u = F.normalize(v @ mat.t(), dim=1, eps=self.eps)
            if self.training:  # type: ignore[attr-defined]
                self.u0.copy_(u)
        sigma = (u @ mat @ v.t()).squeeze()
        if self.training:  # type: ignore[attr-defined]
            with torch.no_grad():
                self.sv0.copy_(sigma.detach().reshape(1))
        return self.weight / sigma


class SNConv2d(nn.Conv2d, SN):
    """``(in, out, kernel_size, stride, padding, dilation, groups, bias)`` of ``nn.Conv2d``, then SN's arguments."""

    def __init__(self, *args: Any, num_svs: int = 1, num_itrs: int = 1, eps: float = 1e-12, **kwargs: Any) -> None:
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._init_sn(num_svs, num_itrs, self.out_channels, eps)

    def forward(self, x: Tensor) -> Tensor:  # zero padding handed straight to F.conv2d
        return F.conv2d(x, self.sn_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class SNLinear(nn.Linear, SN):
    def __init__(self, *args: Any, num_svs: int = 1, num_itrs: int = 1, eps: float = 1e-12, **kwargs: Any) -> None:
        nn.Linear.__init__(self, *args, **kwargs)
        self._init_sn(num_svs, num_itrs, self.out_features, eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.sn_weight(), self.bias)


class SNEmbedding(nn.Embedding, SN):
    def __init__(self, *args: Any, num_svs: int = 1, num_itrs: int = 1, eps: float = 1e-12, **kwargs: Any) -> None:
        nn.Embedding.__init__(self, *args, **kwargs)
        self._init_sn(num_svs, num_itrs, self.num_embeddings, eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.embedding(x, self.sn_weight())


class DBlock(nn.Module):
    """Pre-activation residual block: two 3x3 convs, a 1x1 shortcut conv, optional 2x average pooling."""

    def __init__(self, in_ch: int, out_ch: int, which_conv: Any, preactivation: bool, downsample: bool) -> None:
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1, self.conv2 = which_conv(in_ch, out_ch), which_conv(out_ch, out_ch)
        self.conv_sc = which_conv(in_ch, out_ch, kernel_size=1, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x) if self.preactivation else x)))
        shortcut = self.conv_sc(x)
        if self.downsample:
            h, shortcut = F.avg_pool2d(h, 2), F.avg_pool2d(shortcut, 2)
        return h + shortcut


for _cls in (SN, SNConv2d, SNLinear, SNEmbedding, DBlock):
    setattr(layers, _cls.__name__, _cls)


class MasterCopyAdam(torch.optim.Optimizer):
    """Adam whose update runs on an fp32 master copy ``state['fp32_p']`` (updated in place); like BigGAN's
    ``Adam16``, the fp16 Parameter gets a new tensor re-cast from it at every step (``p.data = fp32_p.half()``)."""

    def __init__(
        self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__(list(params), dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, fp32_p=p.detach().float().clone())
                    state.update(m=torch.zeros_like(state["fp32_p"]), v=torch.zeros_like(state["fp32_p"]))
                grad = p.grad.float()
                state["step"] += 1
                state["m"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["v"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                scale = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                state["fp32_p"].addcdiv_(state["m"], state["v"].sqrt().add_(group["eps"]), value=-scale)
                p.data = state["fp32_p"].to(p.dtype)


class Discriminator(nn.Module):
    """BigGAN's D: residual D blocks, ``linear(h) + <embed(y), h>``, its own ``optim``; ``config``: BigGAN's
    other keyword arguments (resolution, num_D_SVs, SN_eps, D_lr, D_B1, D_mixed_precision, D_fp16, skip_init...)."""

    def __init__(self, D_ch: int = 8, n_classes: int = 4, D_param: str = "SN", **config: Any) -> None:
        super().__init__()
        get = config.get
        self.resolution, self.n_classes, self.D_param = get("resolution", 16), n_classes, D_param
        self.fp16 = get("D_fp16", False)
        if self.D_param == "SN":  # like BigGAN: no other D_param is handled here
            sn = dict(num_svs=get("num_D_SVs", 1), num_itrs=get("num_D_SV_itrs", 1), eps=get("SN_eps", 1e-12))
            self.which_conv = functools.partial(layers.SNConv2d, kernel_size=3, padding=1, **sn)
            self.which_linear = functools.partial(layers.SNLinear, **sn)
            self.which_embedding = functools.partial(layers.SNEmbedding, **sn)
        widths = [3, D_ch, 2 * D_ch, 2 * D_ch]
        self.blocks = nn.ModuleList(
            layers.DBlock(widths[i], widths[i + 1], self.which_conv, preactivation=i > 0, downsample=i < 2)
            for i in range(3)
        )
        self.linear = self.which_linear(widths[-1], 1)
        self.embed = self.which_embedding(n_classes, widths[-1])
        if not get("skip_init", False):
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    nn.init.orthogonal_(module.weight)
        opt = MasterCopyAdam if get("D_mixed_precision", False) else torch.optim.Adam
        betas = (get("D_B1", 0.0), get("D_B2", 0.999))
        self.optim = opt(self.parameters(), lr=get("D_lr", 2e-4), betas=betas, eps=get("adam_eps", 1e-8))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        h = F.relu(h).sum(dim=(2, 3))
        return self.linear(h) + (self.embed(y) * h).sum(dim=1, keepdim=True)


class Generator(nn.Module):
    """SN generator (it must keep SN when D is patched): z (+ class embedding) -> 4x4 -> 16x16 image."""

    def __init__(self, G_ch: int = 8, dim_z: int = 16, n_classes: int = 4, G_lr: float = 2e-4, **kwargs: Any) -> None:
        super().__init__()
        self.dim_z, self.ch = dim_z, G_ch
        self.which_conv = functools.partial(layers.SNConv2d, kernel_size=3, padding=1)
        self.shared = nn.Embedding(n_classes, dim_z)
        self.linear = layers.SNLinear(dim_z, G_ch * 16)
        self.convs = nn.ModuleList([self.which_conv(G_ch, G_ch), self.which_conv(G_ch, G_ch), self.which_conv(G_ch, 3)])
        self.optim = torch.optim.Adam(self.parameters(), lr=G_lr, betas=(0.0, 0.999))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = self.linear(z + self.shared(y)).view(-1, self.ch, 4, 4)
        for i, conv in enumerate(self.convs):
            h = conv(F.interpolate(F.relu(h), scale_factor=2) if i < 2 else F.relu(h))
        return torch.tanh(h)


def prepare_parser() -> argparse.ArgumentParser:
    """The slice of BigGAN's ``utils.prepare_parser()`` that ``run`` uses."""
    parser = argparse.ArgumentParser()
    for flag, kind, default in [
        ("--model", str, "BigGAN"),
        ("--D_param", str, "SN"),
        ("--G_param", str, "SN"),
        ("--D_ch", int, 8),
        ("--G_ch", int, 8),
        ("--D_lr", float, 2e-4),
        ("--D_B1", float, 0.0),
        ("--seed", int, 0),
        ("--batch_size", int, 4),
        ("--num_D_steps", int, 2),
        ("--num_iters", int, 2),
        ("--weights_root", str, ""),
        ("--experiment_name", str, "standin"),
        ("--sv_log_interval", int, 0),
    ]:
        parser.add_argument(flag, type=kind, default=default)
    parser.add_argument("--D_mixed_precision", action="store_true")
    parser.add_argument("--D_fp16", action="store_true")
    parser.add_argument("--resume", action="store_true")
    return parser


def d_step(G: Generator, D: Discriminator, batch: int = 4) -> None:
    """One hinge-loss step of ``D.optim`` on random "real" images and detached fakes, in D's dtype."""
    dtype = next(D.parameters()).dtype
    D.optim.zero_grad()
    y = torch.randint(0, D.n_classes, (batch,))
    fake = G(torch.randn(batch, G.dim_z), y).detach().to(dtype)
    real = torch.rand(batch, 3, D.resolution, D.resolution).to(dtype) * 2 - 1
    (F.relu(1 - D(real, y)).float().mean() + F.relu(1 + D(fake, y)).float().mean()).backward()
    D.optim.step()


def g_step(G: Generator, D: Discriminator, batch: int = 4) -> None:
    dtype = next(D.parameters()).dtype
    G.optim.zero_grad()
    y = torch.randint(0, D.n_classes, (batch,))
    (-D(G(torch.randn(batch, G.dim_z), y).to(dtype), y).float().mean()).backward()
    G.optim.step()


def get_SVs(net: nn.Module, prefix: str) -> dict[str, float]:
    """Like BigGAN's ``utils.get_SVs``: every ``sv`` entry of ``net``'s state dict as ``<prefix>_<key>`` floats."""
    state = net.state_dict()
    return {f"{prefix}_{key}".replace(".", "_"): float(state[key].float().item()) for key in state if "sv" in key}


def _file(root: str, experiment: str, name: str, suffix: Optional[str]) -> str:
    return f"{root}/{experiment}/{'_'.join(part for part in (name, suffix) if part)}.pth"


def save_weights(
    G: Any,
    D: Any,
    state_dict: dict,
    weights_root: str,
    experiment_name: str,
    name_suffix: Any = None,
    G_ema: Any = None,
) -> None:
    """Like BigGAN's ``utils.save_weights``: G, G_optim, D, D_optim, state_dict (and G_ema), one file each."""
    os.makedirs(f"{weights_root}/{experiment_name}", exist_ok=True)
    objects = dict(G=G, G_optim=G.optim, D=D, D_optim=D.optim, state_dict=state_dict, G_ema=G_ema)
    for name, obj in objects.items():
        if obj is not None:
            state = obj if isinstance(obj, dict) else obj.state_dict()
            torch.save(state, _file(weights_root, experiment_name, name, name_suffix))


def load_weights(
    G: Any,
    D: Any,
    state_dict: dict,
    weights_root: str,
    experiment_name: str,
    name_suffix: Any = None,
    G_ema: Any = None,
    strict: bool = True,
    load_optim: bool = True,
) -> None:
    """Like BigGAN's ``utils.load_weights``: G then its optimizer, D then its optimizer, then state_dict's items."""
    path = functools.partial(_file, weights_root, experiment_name, suffix=name_suffix)
    for name, net in (("G", G), ("D", D)):
        if net is not None:
            net.load_state_dict(torch.load(path(name=name)), strict=strict)
            if load_optim:
                net.optim.load_state_dict(torch.load(path(name=name + "_optim")))
    saved = torch.load(path(name="state_dict"))
    state_dict.update({key: saved[key] for key in state_dict})
    if G_ema is not None:
        G_ema.load_state_dict(torch.load(path(name="G_ema")), strict=strict)


def run(config: dict[str, Any]) -> None:
    """Like ``train.run``: build G and D (model module by name), resume, train, save through ``utils``."""
    model, utils = importlib.import_module(config["model"]), importlib.import_module("utils")
    torch.manual_seed(config["seed"])
    G, D = model.Generator(**config), model.Discriminator(**config)
    if config["D_fp16"]:
        D = D.half()
    state = {"itr": 0, "config": config}
    where = (config["weights_root"], config["experiment_name"])
    if config["resume"]:
        utils.load_weights(G, D, state, *where)
    record: dict[str, Any] = {"config": dict(config), "G": G, "D": D, "sv_after_D_steps": []}
    for _ in range(config["num_iters"]):
        torch.manual_seed(config["seed"] * 100_003 + state["itr"])  # the batches depend on the iteration only
        for _ in range(config["num_D_steps"]):
            d_step(G, D, config["batch_size"])
            record["sv_after_D_steps"].append({n: b.float().clone() for n, b in D.named_buffers() if "sv" in n})
        g_step(G, D, config["batch_size"])
        state["itr"] += 1
        if config["sv_log_interval"] > 0 and not state["itr"] % config["sv_log_interval"]:  # train.py's SV log
            record.setdefault("svs", []).append(utils.get_SVs(D, "D"))
    if config["weights_root"]:
        utils.save_weights(G, D, state, *where)
    RUNS.append(record)
