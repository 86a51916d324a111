"""san_biggan on an actual ajbrock/BigGAN-PyTorch checkout named by ``SAN_BIGGAN_ROOT`` (skipped without one).

Needs BigGAN's requirements (torchvision, h5py, tqdm, scipy) and the CIFAR-10 subset under ../shared/data.
The model is built through the launcher's :func:`~san_biggan.launcher.prepare` (BigGAN's own parser, the
construction-time swap, the checkpoint hooks on ``utils.save_weights``/``load_weights``) and trained with
BigGAN's own ``train_fns.GAN_training_function`` on CPU.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from san_biggan import BigGANCheckout, SANBigGANError, patch_discriminator
from test_biggan_adapter import assert_normalized, recomputed
from test_biggan_launcher import assert_bitwise_equal, state_of
from torch import nn

from san_core import conv_constant, linear_constant

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10_exact_subset.npz"

ROOT = os.environ.get("SAN_BIGGAN_ROOT")
real = pytest.mark.skipif(not ROOT, reason="SAN_BIGGAN_ROOT is not set (path of an ajbrock/BigGAN-PyTorch checkout)")
SMALL = ["--dataset", "C10", "--G_ch", "16", "--D_ch", "16", "--batch_size", "8", "--num_D_steps", "2", "--G_attn", "0"]


@pytest.fixture
def biggan():
    """The real checkout's modules, the launcher's config (``prepare``: parser, patch, β1) and a builder."""
    import importlib.util

    from san_biggan.launcher import prepare

    missing = [m for m in ("torchvision", "h5py", "tqdm", "scipy") if importlib.util.find_spec(m) is None]
    if missing or not DATA.is_file():
        pytest.skip(f"BigGAN-PyTorch needs {missing} installed; data {DATA} present: {DATA.is_file()}")
    checkout = BigGANCheckout(ROOT)
    prepared_runs = []

    def build(*extra: str):
        prepared = prepare(["--biggan-root", ROOT, "--", *SMALL, *extra])
        prepared_runs.append(prepared)
        utils, model = checkout.import_module("utils"), checkout.import_module(prepared.config["model"])
        config = dict(prepared.config, resolution=utils.imsize_dict["C10"], n_classes=utils.nclass_dict["C10"])
        config.update(
            G_activation=utils.activation_dict[config["G_nl"]], D_activation=utils.activation_dict[config["D_nl"]]
        )
        return config, utils, model

    yield checkout, build
    for prepared in prepared_runs:
        prepared.remove()
    checkout.unload()


def cifar_batch(n: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    data = np.load(DATA)
    x = torch.from_numpy(data["x_train"][:n]).permute(0, 3, 1, 2).float() / 127.5 - 1  # ToTensor + Normalize(.5, .5)
    return x.to(dtype), torch.from_numpy(data["y_train"][:n]).long()


@real
@pytest.mark.parametrize("fp16, attn", [(False, "16"), (True, "0")], ids=["fp32-attention", "fp16-Adam16"])
def test_real_biggan_training_loop(biggan, fp16, attn, capsys):
    checkout, build = biggan
    config, utils, BigGAN = build("--D_param", "SAN", "--D_attn", attn, *(["--D_fp16", "--D_mixed_precision"] * fp16))
    torch.manual_seed(0)
    G, D = BigGAN.Generator(**config), BigGAN.Discriminator(**config)
    D = D.half() if fp16 else D  # as train.run does
    checks: list[dict[str, float]] = []
    D.optim.register_step_post_hook(lambda *_: checks.append(recomputed(D)))  # runs after SAN's hook
    z_, y_ = utils.prepare_z_y(config["batch_size"], G.dim_z, config["n_classes"], device="cpu")
    state = dict(itr=0, epoch=0, save_num=0, save_best_num=0, best_IS=0, best_FID=999999, config=config)
    train = checkout.import_module("train_fns").GAN_training_function(
        G, D, BigGAN.G_D(G, D), z_, y_, None, state, config
    )
    x, y = cifar_batch(16, torch.float16 if fp16 else torch.float32)
    for _ in range(1 if fp16 else 2):  # fp16 convs are slow on CPU
        metrics = train(x, y)
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    tol = 3e-3 if fp16 else 1e-5
    assert len(checks) == (2 if fp16 else 4) and all(abs(c - 1) < tol for check in checks for c in check.values()), (
        checks
    )
    assert "Adam beta1 of D (--D_B1) = 0.5" in capsys.readouterr().out and D.optim.param_groups[0]["betas"][0] == 0.5
    assert type(D.optim).__name__ == ("Adam16" if fp16 else "Adam")
    svs = utils.get_SVs(D, "D")  # BigGAN's own SV logging
    expected = {f"D_{n}_sv0".replace(".", "_"): float(c) for n, c in D.san.san.last_constants.items()}
    assert svs == pytest.approx(expected, abs=1e-3 if fp16 else 1e-6) and len(svs) == 10 + 16 * (attn == "16") + 2
    for name, layer in D.san.layers.items() if fp16 else ():
        master = D.optim.state[layer.weight]["fp32_p"]
        assert torch.equal(master.half(), layer.weight)  # Adam16's master rescaled too, the fp16 weight cast from it
        if isinstance(layer, nn.Conv2d):  # the master's own constant: 1 to float32 precision
            size = D.san.san.input_sizes[name]
            constant = conv_constant(master, size, stride=layer.stride, dilation=layer.dilation)
        else:
            constant = linear_constant(master)
        assert abs(float(constant) - 1) < 2e-6, (name, float(constant))
    layers = checkout.import_module("layers")
    assert utils.get_SVs(G, "G") and all(
        isinstance(m, layers.SNConv2d) for m in G.modules() if isinstance(m, nn.Conv2d)
    )


@real
@pytest.mark.parametrize("model", ["BigGAN", "BigGANdeep"])
def test_real_patch_discriminator_and_unpatch(biggan, model):
    config, _, module = biggan[1]("--model", model, "--D_attn", "0")
    D = module.Discriminator(**config)
    x, y = cifar_batch(4)
    modules, params = dict(D.named_modules()), [id(p) for p in D.parameters()]
    out = D.eval()(x, y)
    patch = patch_discriminator(D.train())
    assert [id(p) for p in D.parameters()] == params and patch.names and D.san.optimizers == [D.optim]
    assert_normalized(D, 1e-5)
    patch.unpatch()
    assert all(D.get_submodule(n) is m for n, m in modules.items() if n)
    torch.testing.assert_close(D.eval()(x, y), out, rtol=1e-4, atol=1e-4)


@real
def test_real_resume_with_biggan_save_and_load_weights_is_bit_for_bit(biggan, tmp_path, capsys):
    """1 iteration (2 D steps), BigGAN's save_weights, a fresh G and D, its load_weights, 1 more == 2 iterations."""
    checkout, build = biggan
    config, utils, BigGAN = build(
        "--D_param", "SAN", "--D_attn", "0", "--san_interval", "3", "--san_filter_ratio", "0.5"
    )
    train_fns, (x, y) = checkout.import_module("train_fns"), cifar_batch(16)

    def start():
        torch.manual_seed(0)
        G, D = BigGAN.Generator(**config), BigGAN.Discriminator(**config)
        state = dict(itr=0, epoch=0, save_num=0, save_best_num=0, best_IS=0, best_FID=999999, config=config)
        z_, y_ = utils.prepare_z_y(config["batch_size"], G.dim_z, config["n_classes"], device="cpu")
        return (
            dict(G=G, D=D),
            state,
            train_fns.GAN_training_function(G, D, BigGAN.G_D(G, D), z_, y_, None, state, config),
        )

    def iterate(train, state) -> None:  # the batches depend on the iteration only, like a fixed data order
        torch.manual_seed(1000 + state["itr"])
        train(x, y)
        state["itr"] += 1

    whole, state, train = start()
    for _ in range(2):
        iterate(train, state)
    nets, state, train = start()
    iterate(train, state)
    for suffix in (None, "copy0"):  # what train_fns.save_and_sample does
        utils.save_weights(nets["G"], nets["D"], state, str(tmp_path), "exp", suffix)
    assert sorted(p.name for p in (tmp_path / "exp").glob("D*")) == [
        *["D.pth", "D_copy0.pth", "D_optim.pth", "D_optim_copy0.pth", "D_san.pth", "D_san_copy0.pth"]
    ]
    resumed, state, train = start()
    utils.load_weights(resumed["G"], resumed["D"], state, str(tmp_path), "exp", "copy0")  # as train.run --resume
    assert state["itr"] == 1 and isinstance(state["config"]["G_activation"], nn.ReLU)
    assert resumed["D"].san.san.calls == 2 and "restored SAN state from" in capsys.readouterr().out
    iterate(train, state)
    assert resumed["D"].san.san.calls == 4
    assert_bitwise_equal(state_of(resumed), state_of(whole), "resumed vs uninterrupted")


@real
def test_real_sync_free_nan_raised_by_the_sv_log_and_reparametrize_refused(biggan):
    checkout, build = biggan
    with pytest.raises(SANBigGANError, match=r"^--san_form reparametrize is not supported by san_biggan"):
        build("--D_param", "SAN", "--san_form", "reparametrize")
    config, utils, BigGAN = build("--D_param", "SAN", "--D_attn", "0", "--san_sync_free", "on")
    torch.manual_seed(0)
    G, D = BigGAN.Generator(**config), BigGAN.Discriminator(**config)
    assert D.san.san.config["sync_free"] is True
    z_, y_ = utils.prepare_z_y(config["batch_size"], G.dim_z, config["n_classes"], device="cpu")
    state = dict(itr=0, epoch=0, save_num=0, save_best_num=0, best_IS=0, best_FID=999999, config=config)
    train = checkout.import_module("train_fns").GAN_training_function(
        G, D, BigGAN.G_D(G, D), z_, y_, None, state, config
    )
    x, y = cifar_batch(16)
    train(x, y)
    assert D.san.san.sync_free_active() and set(utils.get_SVs(D, "D"))  # BigGAN's SV log, with SAN.check() first
    name, layer = next(iter(D.san.layers.items()))
    with torch.no_grad():
        layer.weight.view(-1)[0] = float("nan")
    train(x, y)  # the sync-free steps leave the layer unchanged and do not raise
    with pytest.raises(ValueError, match=rf"^SAN: layers \[.*'{re.escape(name)}'.*\] had NaN/Inf weights at a sync"):
        utils.get_SVs(D, "D")
