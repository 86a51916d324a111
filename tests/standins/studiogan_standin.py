"""A small stand-in for the parts of PyTorch-StudioGAN that ``san_studiogan`` patches (written from scratch).

It plays the StudioGAN modules the adapter touches: ``src/config.py`` (``Configurations`` with
``load_base_cfgs`` / strict ``_overwrite_cfgs`` / ``define_modules`` / ``define_optimizer``,
``MODULES.d_*`` builders chosen by ``MODEL.apply_d_sn``, BatchNorm in D when SN is off),
``src/models/model.py`` (``load_generator_discriminator`` passing ``apply_d_sn=MODEL.apply_d_sn``
to D), ``src/utils/misc.py`` (``save_model``) and ``src/utils/ckpt.py`` (``load_ckpt`` reading the
keys it needs by name, ``load_StudioGAN_ckpts`` calling it through the module). :func:`train_worker`
plays ``loader.load_worker`` for DDP: spawned, it receives the pickled configuration, seeds with
``seed + rank``, trains over gloo on the CPU; rank 0 saves, every rank resumes from the checkpoint.
"""

from __future__ import annotations

import glob
import os

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.utils import spectral_norm


class make_empty_object:
    pass


# ------------------------------------------------------------------ builders (StudioGAN's utils/ops.py shape)
def conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


def deconv2d(in_channels, out_channels, kernel_size, stride=2, padding=0, dilation=1, groups=1, bias=True):
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, 0, groups, bias, dilation)


def linear(in_features, out_features, bias=True):
    return nn.Linear(in_features, out_features, bias)


def embedding(num_embeddings, embedding_dim):
    return nn.Embedding(num_embeddings, embedding_dim)


def snconv2d(*args, **kwargs):
    return spectral_norm(conv2d(*args, **kwargs), eps=1e-6)


def sndeconv2d(*args, **kwargs):
    return spectral_norm(deconv2d(*args, **kwargs), eps=1e-6)


def snlinear(*args, **kwargs):
    return spectral_norm(linear(*args, **kwargs), eps=1e-6)


def sn_embedding(*args, **kwargs):
    return spectral_norm(embedding(*args, **kwargs), eps=1e-6)


def batchnorm_2d(in_features):
    return nn.BatchNorm2d(in_features, eps=1e-4)


def d_hinge(d_logit_real, d_logit_fake, DDP):
    return F.relu(1.0 - d_logit_real).mean() + F.relu(1.0 + d_logit_fake).mean()


def g_hinge(d_logit_fake, DDP):
    return -d_logit_fake.mean()


# ------------------------------------------------------------------ config.py
class Configurations:
    def __init__(self, cfg_file):
        self.cfg_file = cfg_file
        self.load_base_cfgs()
        self._overwrite_cfgs(cfg_file)
        self.define_modules()

    def load_base_cfgs(self):
        self.DATA, self.MODEL, self.LOSS = make_empty_object(), make_empty_object(), make_empty_object()
        self.OPTIMIZATION, self.RUN, self.STYLEGAN = make_empty_object(), make_empty_object(), make_empty_object()
        self.MODULES = make_empty_object()
        self.DATA.name, self.DATA.img_size, self.DATA.num_classes, self.DATA.img_channels = "CIFAR10", 8, 4, 3
        m = self.MODEL
        m.backbone, m.g_cond_mtd, m.d_cond_mtd = "tiny", "W/O", "PD"
        m.apply_g_sn, m.apply_d_sn, m.z_dim, m.g_conv_dim, m.d_conv_dim = False, False, 8, 8, 8
        m.info_type = "N/A"
        self.LOSS.adv_loss, self.LOSS.apply_wc, self.LOSS.wc_bound = "hinge", False, "N/A"
        o = self.OPTIMIZATION
        o.type_, o.batch_size, o.g_lr, o.d_lr, o.beta1, o.beta2 = "Adam", 4, 2e-4, 2e-4, 0.5, 0.999
        o.d_updates_per_step, o.g_updates_per_step, o.total_steps = 1, 1, 10
        self.STYLEGAN.stylegan3_cfg = "N/A"
        self.super_cfgs = {
            "DATA": self.DATA,
            "MODEL": self.MODEL,
            "LOSS": self.LOSS,
            "OPTIMIZATION": self.OPTIMIZATION,
            "RUN": self.RUN,
            "STYLEGAN": self.STYLEGAN,
        }

    def update_cfgs(self, cfgs, super="RUN"):
        for key, value in cfgs.items():
            setattr(self.super_cfgs[super], key, value)

    def _overwrite_cfgs(self, cfg_file):
        with open(cfg_file) as f:
            for section, values in yaml.load(f, Loader=yaml.FullLoader).items():
                for key, value in values.items():
                    if not hasattr(self.super_cfgs[section], key):
                        raise AttributeError(f"There does not exist '{section}.{key}' attribute in the config.py.")
                    setattr(self.super_cfgs[section], key, value)

    def define_losses(self):
        self.LOSS.d_loss, self.LOSS.g_loss = d_hinge, g_hinge

    def define_modules(self):
        mods, sn = self.MODULES, self.MODEL.apply_d_sn
        mods.g_conv2d, mods.g_deconv2d, mods.g_linear, mods.g_embedding = conv2d, deconv2d, linear, embedding
        mods.d_conv2d = snconv2d if sn else conv2d
        mods.d_deconv2d = sndeconv2d if sn else deconv2d
        mods.d_linear = snlinear if sn else linear
        mods.d_embedding = sn_embedding if sn else embedding
        if not sn:
            mods.d_bn = batchnorm_2d
        mods.g_act_fn, mods.d_act_fn = nn.ReLU(), nn.LeakyReLU(0.1)
        return mods

    def define_optimizer(self, Gen, Dis):
        o = self.OPTIMIZATION
        o.g_optimizer = torch.optim.Adam(Gen.parameters(), o.g_lr, betas=(o.beta1, o.beta2), eps=1e-6)
        o.d_optimizer = torch.optim.Adam(Dis.parameters(), o.d_lr, betas=(o.beta1, o.beta2), eps=1e-6)


# ------------------------------------------------------------------ utils/misc.py and utils/ckpt.py
def save_model(model, when, step, ckpt_dir, states):
    template = os.path.join(ckpt_dir, "model={}-{}-weights-step={}.pth")
    for old in glob.glob(template.format(model, when, "*")):
        os.remove(old)
    torch.save(states, template.format(model, when, step))


def load_ckpt(model, optimizer, ckpt_path, load_model=False, load_opt=False, load_misc=False, is_freezeD=False):
    ckpt = torch.load(ckpt_path, map_location=lambda storage, loc: storage)
    if load_model:
        model.load_state_dict(ckpt["state_dict"], strict=not is_freezeD)
    if load_opt:
        optimizer.load_state_dict(ckpt["optimizer"])
    if load_misc:
        return ckpt["seed"], ckpt["run_name"], ckpt["step"]
    return None


def load_StudioGAN_ckpts(ckpt_dir, load_best, Gen, Dis, g_optimizer, d_optimizer, is_train, RUN):
    when = "best" if load_best else "current"
    paths = [glob.glob(os.path.join(ckpt_dir, f"model={m}-{when}-weights-step=*.pth"))[0] for m in "GD"]
    load_ckpt(model=Gen, optimizer=g_optimizer, ckpt_path=paths[0], load_model=True, load_opt=is_train)
    return load_ckpt(Dis, d_optimizer, paths[1], load_model=True, load_opt=is_train, load_misc=True)


# ------------------------------------------------------------------ models
class Discriminator(nn.Module):
    def __init__(self, img_size, d_conv_dim, apply_d_sn, d_cond_mtd, num_classes, MODULES):
        super().__init__()
        c = d_conv_dim
        self.apply_d_sn = apply_d_sn
        self.conv0 = MODULES.d_conv2d(in_channels=3, out_channels=c, kernel_size=3, stride=1, padding=1)
        self.conv1 = MODULES.d_conv2d(in_channels=c, out_channels=2 * c, kernel_size=4, stride=2, padding=1)
        if not apply_d_sn:
            self.bn0, self.bn1 = MODULES.d_bn(in_features=c), MODULES.d_bn(in_features=2 * c)
        self.activation = MODULES.d_act_fn
        self.linear1 = MODULES.d_linear(in_features=2 * c, out_features=1, bias=True)
        self.embedding = MODULES.d_embedding(num_classes, 2 * c) if d_cond_mtd == "PD" else None

    def forward(self, x, label, eval=False, adc_fake=False):
        h = self.conv0(x)
        h = self.activation(h if self.apply_d_sn else self.bn0(h))
        h = self.conv1(h)
        h = self.activation(h if self.apply_d_sn else self.bn1(h))
        h = h.sum(dim=[2, 3])
        adv_output = self.linear1(h).squeeze(1)
        if self.embedding is not None:
            adv_output = adv_output + (self.embedding(label) * h).sum(1)
        return {"h": h, "adv_output": adv_output, "label": label}


class Generator(nn.Module):
    def __init__(self, z_dim, img_size, g_conv_dim, MODULES):
        super().__init__()
        self.size, self.c = img_size // 2, g_conv_dim
        self.linear0 = MODULES.g_linear(in_features=z_dim, out_features=g_conv_dim * self.size**2)
        self.conv = MODULES.g_conv2d(in_channels=g_conv_dim, out_channels=3, kernel_size=3, padding=1)
        self.activation = MODULES.g_act_fn

    def forward(self, z, label, eval=False):
        h = self.activation(self.linear0(z)).view(-1, self.c, self.size, self.size)
        return torch.tanh(self.conv(F.interpolate(h, scale_factor=2)))


def load_generator_discriminator(DATA, OPTIMIZATION, MODEL, STYLEGAN, MODULES, RUN, device, logger):
    Gen = Generator(MODEL.z_dim, DATA.img_size, MODEL.g_conv_dim, MODULES).to(device)
    Dis = Discriminator(DATA.img_size, MODEL.d_conv_dim, MODEL.apply_d_sn, MODEL.d_cond_mtd, DATA.num_classes, MODULES)
    return Gen, None, None, Dis.to(device), None, None, None, None


# ------------------------------------------------------------------ loader.load_worker for DDP
def build(cfgs, rank, broadcast):
    """G, D and their optimizers as ``load_worker`` builds them (``fix_seed(seed + rank)`` first)."""
    torch.manual_seed(cfgs.RUN.seed + rank)
    Gen, _, _, Dis, *_ = load_generator_discriminator(
        cfgs.DATA, cfgs.OPTIMIZATION, cfgs.MODEL, cfgs.STYLEGAN, cfgs.MODULES, cfgs.RUN, "cpu", None
    )
    cfgs.define_optimizer(Gen, Dis)
    cfgs.define_losses()
    for p in [*Gen.parameters(), *Dis.parameters()] if broadcast else ():
        torch.distributed.broadcast(p.data, src=0)
    return Gen, Dis


def train_d(cfgs, Gen, Dis, steps, start=0, rank=0, world_size=1):
    """D steps on data drawn from ``(seed, rank, step)`` alone; gradients averaged over ranks when distributed.

    DDP's two effects are done by hand (its constructor is slow to import on small CI machines):
    rank 0's initial G and D are broadcast (:func:`build`), D's gradients are averaged before every step.
    """
    o, n, size = cfgs.OPTIMIZATION, cfgs.DATA.num_classes, cfgs.DATA.img_size
    for step in range(start, start + steps):
        g = torch.Generator().manual_seed(cfgs.RUN.seed * 10_000 + rank * 1_000 + step)
        real = torch.rand(o.batch_size, 3, size, size, generator=g) * 2 - 1
        labels = torch.randint(n, (o.batch_size,), generator=g)
        fake = Gen(torch.randn(o.batch_size, cfgs.MODEL.z_dim, generator=g), labels).detach()
        o.d_optimizer.zero_grad()
        ddp = world_size > 1
        cfgs.LOSS.d_loss(Dis(real, labels)["adv_output"], Dis(fake, labels)["adv_output"], DDP=ddp).backward()
        for p in Dis.parameters() if ddp else ():
            torch.distributed.all_reduce(p.grad)
            p.grad /= world_size
        o.d_optimizer.step()


def save(cfgs, Gen, Dis, step, ckpt_dir):
    """What ``WORKER.save`` hands to ``misc.save_model`` (run name, seed and step among D's extra keys)."""
    o = cfgs.OPTIMIZATION
    save_model(
        "G", "current", step, ckpt_dir, {"state_dict": Gen.state_dict(), "optimizer": o.g_optimizer.state_dict()}
    )
    d_states = {"state_dict": Dis.state_dict(), "optimizer": o.d_optimizer.state_dict()}
    save_model("D", "current", step, ckpt_dir, {**d_states, "seed": cfgs.RUN.seed, "run_name": "standin", "step": step})


def train_worker(local_rank, cfgs, world_size, init_file, steps, out_dir):
    """Spawned per rank: ``steps`` D steps, rank 0 saves, every rank resumes into fresh objects for ``steps``
    more; also ``2 * steps`` uninterrupted. Writes ``rank{r}.pt`` with D's weights and SAN's state."""
    import san_studiogan  # to report whether the unpickled cfgs re-installed the patches here

    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=local_rank, world_size=world_size)
    try:
        installed = san_studiogan.is_installed(__import__(type(cfgs).__module__, fromlist=["_"]))
        Gen, Dis = build(cfgs, local_rank, broadcast=True)
        train_d(cfgs, Gen, Dis, steps, 0, local_rank, world_size)
        san = getattr(cfgs.OPTIMIZATION, "d_san", None)
        first = {
            "weights": {k: v.detach().clone() for k, v in Dis.state_dict().items()},
            "installed": installed,
            "calls": None if san is None else san.calls,
            "circular": [m.padding_mode for m in Dis.modules() if isinstance(m, nn.Conv2d)],
            "pid": os.getpid(),
        }
        if local_rank == 0:
            save(cfgs, Gen, Dis, steps, out_dir)
        dist.barrier()
        Gen, Dis = build(cfgs, local_rank, broadcast=True)
        o = cfgs.OPTIMIZATION
        load_StudioGAN_ckpts(out_dir, False, Gen, Dis, o.g_optimizer, o.d_optimizer, True, cfgs.RUN)
        resumed_calls = None if san is None else o.d_san.calls
        train_d(cfgs, Gen, Dis, steps, steps, local_rank, world_size)
        resumed = {k: v.detach().clone() for k, v in Dis.state_dict().items()}
        Gen, Dis = build(cfgs, local_rank, broadcast=True)
        train_d(cfgs, Gen, Dis, 2 * steps, 0, local_rank, world_size)
        result = {**first, "resumed_calls": resumed_calls, "resumed": resumed, "uninterrupted": Dis.state_dict()}
        torch.save(result, os.path.join(out_dir, f"rank{local_rank}.pt"))
    finally:
        dist.destroy_process_group()
