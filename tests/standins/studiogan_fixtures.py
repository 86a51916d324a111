"""Helpers shared by tests/test_studiogan_*.py: configs, building like ``load_worker``, a real checkout's import."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import san_studiogan
import torch
import yaml
from torch import nn

from san_core import conv_constant, linear_constant

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "studiogan" / "CIFAR10"
DATA = Path(os.environ.get("SAN_DATA_ROOT", Path(__file__).resolve().parents[3] / "shared" / "data"))
ROOT = os.environ.get("SAN_STUDIOGAN_ROOT")
SAN_MODEL = {"apply_d_san": True}
#: What StudioGAN's config.py and models/ import (besides torch, torchvision, numpy).
HOST_DEPS = ("yaml", "scipy", "tqdm", "seaborn", "matplotlib", "kornia", "torchvision", "packaging")
#: StudioGAN's generic top-level module names (kept out of, then restored into, sys.modules).
HOST_NAMES = ("config", "loader", "worker", "data_util", "evaluate", "utils", "models", "metrics", "sync_batchnorm")


def write_cfg(tmp_path: Path, sections: dict, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def standin_cfgs(sg: ModuleType, tmp_path: Path, model=None, loss=None):
    return sg.Configurations(write_cfg(tmp_path, {"MODEL": {**SAN_MODEL, **(model or {})}, "LOSS": loss or {}}))


def build(cfgs, model_module, seed: int = 0):
    """What loader.load_worker does up to the optimizers (CPU)."""
    cfgs.update_cfgs({"mixed_precision": False, "seed": seed}, super="RUN")
    Gen, _, _, Dis, *_ = model_module.load_generator_discriminator(
        DATA=cfgs.DATA,
        OPTIMIZATION=cfgs.OPTIMIZATION,
        MODEL=cfgs.MODEL,
        STYLEGAN=cfgs.STYLEGAN,
        MODULES=cfgs.MODULES,
        RUN=cfgs.RUN,
        device="cpu",
        logger=None,
    )
    cfgs.define_optimizer(Gen, Dis)
    cfgs.define_losses()
    return Gen, Dis


def d_step(cfgs, Gen, Dis, batch: int = 4) -> None:
    n, size = cfgs.DATA.num_classes, cfgs.DATA.img_size
    labels = torch.randint(n, (batch,))
    fake = Gen(torch.randn(batch, cfgs.MODEL.z_dim), labels).detach()
    real = torch.rand(batch, 3, size, size) * 2 - 1
    cfgs.OPTIMIZATION.d_optimizer.zero_grad()
    cfgs.LOSS.d_loss(Dis(real, labels)["adv_output"], Dis(fake, labels)["adv_output"], DDP=False).backward()
    cfgs.OPTIMIZATION.d_optimizer.step()


def constants(san) -> dict[str, float]:
    """Every SAN layer's constant recomputed with san_core's functions (1 right after a normalization)."""
    out = {}
    for name, layer in san.layers.items():
        if isinstance(layer, nn.Conv2d):
            c = conv_constant(layer.weight, san.input_sizes[name], stride=layer.stride, dilation=layer.dilation)
        else:
            c = linear_constant(layer.weight)
        out[name] = float(c)
    return out


# ============================================================================ real checkout ($SAN_STUDIOGAN_ROOT)
def prepare_cpu_host(root: str) -> None:
    """Import fixes this CPU venv needs for StudioGAN: torchvision's ops, NumPy 2 aliases, pkg_resources."""
    import types

    import san_compat
    from packaging.version import parse

    san_compat.ensure_torchvision_importable()
    san_compat.ensure_numpy_aliases()
    if importlib.util.find_spec("pkg_resources") is None:  # setuptools >= 81 dropped it; conv2d_gradfix imports it
        sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
        sys.modules["pkg_resources"].parse_version = parse  # type: ignore[attr-defined]
    src = str(Path(root).resolve() / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def real_host() -> Iterator[tuple[ModuleType, ModuleType]]:
    """Body of a module-scoped fixture: StudioGAN's ``config`` and ``models.model`` with SAN installed."""
    if not ROOT:
        pytest.skip("SAN_STUDIOGAN_ROOT is not set: point it at a POSTECH-CVLab/PyTorch-StudioGAN checkout")
    missing = [m for m in HOST_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"StudioGAN's modules need {' '.join(missing)}: pip install -e '.[studiogan]'")
    saved_path, had_pkg_resources = list(sys.path), "pkg_resources" in sys.modules
    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] in HOST_NAMES}
    for name in saved:
        del sys.modules[name]
    try:
        prepare_cpu_host(ROOT)
        config, model = san_studiogan.import_studiogan(ROOT)
        san_studiogan.install(config, model)
        yield config, model
    finally:
        san_studiogan.uninstall()
        for name in [n for n in sys.modules if n.split(".")[0] in HOST_NAMES]:
            del sys.modules[name]
        if not had_pkg_resources:
            sys.modules.pop("pkg_resources", None)
        sys.modules.update(saved)
        sys.path[:] = saved_path


def real_step(cfgs, Gen, Dis, d_step_: bool, batch: int = 2) -> None:
    """One D or G update as worker.train_discriminator / train_generator do it (CPU, no AMP)."""
    import utils.losses as losses
    import utils.misc as misc
    import utils.sample as sample

    o = cfgs.OPTIMIZATION
    misc.toggle_grad(model=Gen, grad=not d_step_, num_freeze_layers=-1, is_stylegan=False)
    misc.toggle_grad(model=Dis, grad=d_step_, num_freeze_layers=-1, is_stylegan=False)
    fake, labels, *_ = sample.generate_images(
        z_prior=cfgs.MODEL.z_prior, truncation_factor=-1.0, batch_size=batch, z_dim=cfgs.MODEL.z_dim,
        num_classes=cfgs.DATA.num_classes, y_sampler="totally_random", radius=cfgs.LOSS.radius, generator=Gen,
        discriminator=Dis, is_train=True, LOSS=cfgs.LOSS, RUN=cfgs.RUN, MODEL=cfgs.MODEL, device="cpu",
        is_stylegan=False, generator_mapping=None, generator_synthesis=None, style_mixing_p=0.0,
        stylegan_update_emas=True, cal_trsp_cost=False,
    )  # fmt: skip
    optimizer = o.d_optimizer if d_step_ else o.g_optimizer
    optimizer.zero_grad()
    if d_step_:
        real = (torch.rand(batch, 3, cfgs.DATA.img_size, cfgs.DATA.img_size) * 2 - 1).requires_grad_(True)
        real_out = Dis(real, labels)["adv_output"]
        loss = cfgs.LOSS.d_loss(real_out, Dis(fake, labels)["adv_output"], DDP=False)
        if cfgs.LOSS.apply_r1_reg:
            loss = loss + cfgs.LOSS.r1_lambda * losses.cal_r1_reg(adv_output=real_out, images=real, device="cpu")
    else:
        loss = cfgs.LOSS.g_loss(Dis(fake, labels)["adv_output"], DDP=False)
    loss.backward()
    optimizer.step()


def sn_discriminator(cfgs) -> nn.Module:
    """StudioGAN's SN baseline D alone, constructed with the arguments models/model.py passes."""
    m = cfgs.MODEL
    backbone = importlib.import_module(f"models.{m.backbone}")
    return backbone.Discriminator(
        img_size=cfgs.DATA.img_size, d_conv_dim=m.d_conv_dim, apply_d_sn=m.apply_d_sn, apply_attn=m.apply_attn,
        attn_d_loc=m.attn_d_loc, d_cond_mtd=m.d_cond_mtd, aux_cls_type=m.aux_cls_type, d_embed_dim=m.d_embed_dim,
        num_classes=cfgs.DATA.num_classes, normalize_d_embed=m.normalize_d_embed, d_init=m.d_init,
        d_depth=m.d_depth, mixed_precision=False, MODULES=cfgs.MODULES, MODEL=m,
    )  # fmt: skip


def real_ddp_worker(rank: int, payload: bytes, root: str, init_file: str, out_dir: str) -> None:
    """Spawned per rank: unpickle StudioGAN's cfgs (re-installing SAN), 2 D steps under real DDP (gloo)."""
    prepare_cpu_host(root)
    cfgs = pickle.loads(payload)  # what torch.multiprocessing.spawn does with loader.load_worker's cfgs
    import models.model as model
    import utils.misc as misc

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        misc.fix_seed(cfgs.RUN.seed + rank)
        Gen, Dis = build(cfgs, model, seed=cfgs.RUN.seed)
        ddp = nn.parallel.DistributedDataParallel(Dis, broadcast_buffers=False)
        for _ in range(2):
            real_step(cfgs, Gen, ddp, d_step_=True)
        torch.save(
            {"weights": Dis.state_dict(), "calls": cfgs.OPTIMIZATION.d_san.calls, "installed": True},
            os.path.join(out_dir, f"real{rank}.pt"),
        )
    finally:
        torch.distributed.destroy_process_group()
