"""A miniature checkout with NVlabs/SPADE's layout and call structure, written from scratch for CI.

``write_checkout(root)`` writes ``train.py``/``test.py`` and the ``options``, ``models``, ``trainers`` and
``util`` modules the launcher wraps (``define_D``, ``Pix2PixModel.initialize_networks/create_optimizers/
save``, ``Pix2PixTrainer.run_*_one_step``, ``BaseOptions.save_options``), with SPADE's signatures; the
networks come from :mod:`standins.spade_standin`. Like a real checkout it has no ``sync_batchnorm``.
Its modules import ``standins.spade_standin``, so ``tests/`` must be on ``PYTHONPATH``. ``train.py`` prints the
losses every ``--print_freq`` iterations through ``Pix2PixTrainer.get_latest_losses`` (as SPADE's does); a test knob,
``STANDIN_NAN_AT=<iteration>``, puts one NaN into D's first middle conv weight before that iteration's D step.
"""

from __future__ import annotations

from pathlib import Path

FILES = {
    "options/__init__.py": "",
    "options/base_options.py": """
import argparse
import os


class BaseOptions:
    isTrain = True

    def initialize(self, parser):
        parser.add_argument("--name", default="standin")
        parser.add_argument("--checkpoints_dir", default="./checkpoints")
        parser.add_argument("--gpu_ids", default="-1")
        parser.add_argument("--n_layers_D", type=int, default=4)
        parser.add_argument("--crop_size", type=int, default=16)
        return parser

    def parse(self):
        self.parser = self.initialize(argparse.ArgumentParser())
        opt = self.parser.parse_args()
        opt.isTrain = self.isTrain
        if opt.isTrain:
            self.save_options(opt)
        opt.gpu_ids = [int(i) for i in opt.gpu_ids.split(",") if int(i) >= 0]
        return opt

    def save_options(self, opt):
        folder = os.path.join(opt.checkpoints_dir, opt.name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "opt.txt"), "w") as f:
            for key, value in sorted(vars(opt).items()):
                f.write(f"{key}: {value}\\n")
""",
    "options/train_options.py": """
from .base_options import BaseOptions


class TrainOptions(BaseOptions):
    def initialize(self, parser):
        BaseOptions.initialize(self, parser)
        parser.add_argument("--beta1", type=float, default=0.0)
        parser.add_argument("--continue_train", action="store_true")
        parser.add_argument("--which_epoch", default="latest")
        parser.add_argument("--niter", type=int, default=2)
        parser.add_argument("--print_freq", type=int, default=100)
        self.isTrain = True
        return parser
""",
    "options/test_options.py": """
from .base_options import BaseOptions


class TestOptions(BaseOptions):
    isTrain = False
""",
    "models/__init__.py": "",
    "models/networks/__init__.py": """
from models.networks.normalization import SynchronizedBatchNorm2d  # noqa: F401
from models.networks.discriminator import MultiscaleDiscriminator
from standins.spade_standin import Generator


def define_G(opt):
    return Generator(label_nc=2)


def define_D(opt):
    return MultiscaleDiscriminator(opt)
""",
    "models/networks/normalization.py": "from models.networks.sync_batchnorm import SynchronizedBatchNorm2d  # noqa\n",
    "models/networks/discriminator.py": """
from standins.spade_standin import Multiscale


class MultiscaleDiscriminator(Multiscale):
    def __init__(self, opt):
        super().__init__(in_channels=5, ndf=8, n_layers=opt.n_layers_D)
""",
    "models/pix2pix_model.py": """
import torch

import models.networks as networks
import util.util as util
from standins.spade_standin import d_loss, g_loss


class Pix2PixModel(torch.nn.Module):
    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.netG, self.netD, self.netE = self.initialize_networks(opt)

    def forward(self, data, mode):
        if mode == "generator":
            return g_loss(self.netD, self.netG, data["label"])
        return d_loss(self.netD, self.netG, data["label"], data["image"])

    def create_optimizers(self, opt):
        betas = (opt.beta1, 0.9)
        optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=1e-4, betas=betas)
        optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=4e-4, betas=betas)
        return optimizer_G, optimizer_D

    def save(self, epoch):
        util.save_network(self.netG, "G", epoch, self.opt)
        util.save_network(self.netD, "D", epoch, self.opt)

    def initialize_networks(self, opt):
        netG = networks.define_G(opt)
        netD = networks.define_D(opt) if opt.isTrain else None
        if not opt.isTrain or opt.continue_train:
            netG = util.load_network(netG, "G", opt.which_epoch, opt)
            if opt.isTrain:
                netD = util.load_network(netD, "D", opt.which_epoch, opt)
        return netG, netD, None
""",
    "trainers/__init__.py": "",
    "trainers/pix2pix_trainer.py": """
from models.networks.sync_batchnorm import DataParallelWithCallback
from models.pix2pix_model import Pix2PixModel


class Pix2PixTrainer:
    def __init__(self, opt):
        self.opt = opt
        self.pix2pix_model = Pix2PixModel(opt)
        if len(opt.gpu_ids) > 0:
            self.pix2pix_model = DataParallelWithCallback(self.pix2pix_model, device_ids=opt.gpu_ids)
            self.pix2pix_model_on_one_gpu = self.pix2pix_model.module
        else:
            self.pix2pix_model_on_one_gpu = self.pix2pix_model
        print("trainer model:", type(self.pix2pix_model).__name__)
        self.optimizer_G, self.optimizer_D = self.pix2pix_model_on_one_gpu.create_optimizers(opt)

    def run_generator_one_step(self, data):
        self.optimizer_G.zero_grad()
        loss = self.pix2pix_model(data, mode="generator")
        loss.backward()
        self.optimizer_G.step()
        self.g_losses = {"GAN": loss.detach()}

    def run_discriminator_one_step(self, data):
        self.optimizer_D.zero_grad()
        loss = self.pix2pix_model(data, mode="discriminator")
        loss.backward()
        self.optimizer_D.step()
        self.d_losses = {"D": loss.detach()}

    def get_latest_losses(self):
        return {**self.g_losses, **self.d_losses}

    def save(self, epoch):
        self.pix2pix_model_on_one_gpu.save(epoch)
""",
    "util/__init__.py": "",
    "util/util.py": """
import os

import torch


def save_network(net, label, epoch, opt):
    torch.save(net.state_dict(), os.path.join(opt.checkpoints_dir, opt.name, "%s_net_%s.pth" % (epoch, label)))


def load_network(net, label, epoch, opt):
    path = os.path.join(opt.checkpoints_dir, opt.name, "%s_net_%s.pth" % (epoch, label))
    net.load_state_dict(torch.load(path))
    return net
""",
    "data/__init__.py": "",
    "train.py": """
import os

import torch

from options.train_options import TrainOptions
from trainers.pix2pix_trainer import Pix2PixTrainer

opt = TrainOptions().parse()
torch.manual_seed(0)
trainer = Pix2PixTrainer(opt)
size = opt.crop_size
for i in range(opt.niter):
    label = torch.zeros(1, 2, size, size)
    label[:, 0, :, : size // 2] = 1
    label[:, 1, :, size // 2 :] = 1
    data = {"label": label, "image": torch.rand(1, 3, size, size) * 2 - 1}
    trainer.run_generator_one_step(data)
    if os.environ.get("STANDIN_NAN_AT") == str(i):
        netD = trainer.pix2pix_model_on_one_gpu.netD
        weight = next(p for n, p in netD.named_parameters() if ".model1." in n and "weight" in n)
        with torch.no_grad():
            weight.view(-1)[0] = float("nan")
    trainer.run_discriminator_one_step(data)
    if (i + 1) % opt.print_freq == 0:
        print("iteration", i + 1, "losses", {k: round(float(v), 4) for k, v in trainer.get_latest_losses().items()})
trainer.save("latest")
print("standin training finished")
""",
    "test.py": """
from options.test_options import TestOptions

opt = TestOptions().parse()
print("standin test ran for", opt.name)
""",
}


def write_checkout(root: Path) -> Path:
    """Write the miniature checkout under ``root``; returns ``root``."""
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"))
    return root
