"""``python -m san_biggan`` on a fake checkout re-exporting the stand-in, and SAN's state in BigGAN's checkpoints.

Resuming must be invisible: N D steps, ``utils.save_weights``, a fresh process's construction,
``utils.load_weights`` and N more steps give bit-for-bit what 2N uninterrupted steps give, with
``interval = 3`` (the count of steps matters) and ``r = 0.5`` (the kernel-subset generator matters).
"""

from __future__ import annotations

import pickle
import types

import pytest
import torch
from san_biggan import (
    BigGANCheckout,
    SANBigGANError,
    SANLayer,
    SANOptions,
    install_checkpoint_hooks,
    install_discriminator_patch,
    patch_discriminator,
    san_state_file,
)
from san_biggan.launcher import main
from standins import biggan_standin as standin
from test_biggan_adapter import restore_standin  # noqa: F401  (a fixture)
from torch import nn

PLAIN_MODEL = """
import layers, torch
from standins.biggan_standin import Generator
class Discriminator(torch.nn.Module):
    def __init__(self, D_param="SN", **kwargs):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3)
        self.optim = torch.optim.Adam(self.parameters())
"""
RESUME = ["--D_param", "SAN", "--san_interval", "3", "--san_filter_ratio", "0.5", "--num_D_steps", "2"]


@pytest.fixture
def fake_checkout(tmp_path_factory, restore_standin):  # noqa: F811
    """A checkout whose flat modules are one-liners re-exporting the stand-in."""
    root = tmp_path_factory.mktemp("checkout")
    src = "standins.biggan_standin"
    files = dict(layers="SN, SNConv2d, SNEmbedding, SNLinear", BigGAN="Discriminator, Generator", train="run")
    files.update(utils="prepare_parser, save_weights, load_weights, get_SVs", train_fns="d_step", losses="g_step")
    for name, names in files.items():
        (root / f"{name}.py").write_text(f"from {src} import {names}  # noqa: F401\n")
    (root / "plain.py").write_text(PLAIN_MODEL)  # a D that builds no SN layer
    yield root
    BigGANCheckout(root).unload()


def launch(root, *args: str) -> dict:
    assert main(["--biggan-root", str(root), "--", *args]) == 0
    return standin.RUNS[-1]


def state_of(run: dict) -> dict[str, object]:
    """Everything the next step depends on: G and D (weights, buffers, optimizers), SAN's count and generator."""
    G, D = run["G"], run["D"]
    san = D.san.state_dict()
    optims = {"G_optim": G.optim.state_dict()["state"], "D_optim": D.optim.state_dict()["state"]}
    return dict(G=G.state_dict(), D=D.state_dict(), **optims, san=san)


def assert_bitwise_equal(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_launcher_runs_train_with_san_D_and_paper_beta1(fake_checkout, capsys):
    utils_save = standin.save_weights
    assert main(["--biggan-root", str(fake_checkout), "--", "--D_param", "SAN", "--san_interval", "1"]) == 0
    run = standin.RUNS[-1]
    assert all(isinstance(m, SANLayer) for m in run["D"].modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert run["D"].optim.param_groups[0]["betas"][0] == 0.5 and len(run["sv_after_D_steps"]) == 4
    assert "Adam beta1 of D (--D_B1) = 0.5" in capsys.readouterr().out
    utils = BigGANCheckout(fake_checkout).import_module("utils")
    assert not hasattr(standin.Discriminator.__init__, "__san_biggan_original__")  # main removed what it installed
    assert utils.save_weights is utils_save and utils.load_weights is standin.load_weights
    assert launch(fake_checkout, "--D_param", "SAN", "--D_B1", "0.2", "--num_iters", "1")["D"].optim.param_groups[0][
        "betas"
    ] == (0.2, 0.999)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--biggan-root", "/nonexistent/biggan", "--"], "no such directory"),
        (["--biggan-root", "{empty}", "--"], "missing train.py"),
        (["--biggan-root", "{root}", "--", "--D_param", "SAN", "--san_intervall", "2"], "did you mean --san_interval"),
        (["--biggan-root", "{root}", "--", "--san_interval", "2"], "--D_param is 'SN'; add --D_param SAN"),
        (["--biggan-root", "{root}", "--", "--D_param", "SAN", "--san_filter_ratio", "2"], "filter_ratio in (0, 1]"),
        (["--biggan-root", "{root}", "--", "--D_param", "SAN", "--model", "losses"], "expected a Discriminator"),
        (["--biggan-root", "{root}", "--", "--D_param", "SAN", "--D_ch", "x"], "invalid int value"),
        (["--biggan-root", "{root}", "--", "--D_param", "SAN", "--model", "plain"], "nothing to patch"),
    ],
)
def test_launcher_bad_input_one_line_nonzero_nothing_patched(fake_checkout, tmp_path_factory, capsys, args, message):
    empty = tmp_path_factory.mktemp("empty")
    init = standin.Discriminator.__dict__["__init__"]
    argv = [a.format(root=fake_checkout, empty=empty) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("san_biggan: error:") and message in err[0]
    assert standin.Discriminator.__dict__["__init__"] is init
    if "{root}" in args:
        assert BigGANCheckout(fake_checkout).import_module("utils").save_weights is standin.save_weights


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("san_state", [True, False], ids=["with-D_san", "D_san-deleted"])
def test_resume_continues_bit_for_bit(fake_checkout, tmp_path, capsys, san_state):
    where = ["--weights_root", str(tmp_path), "--experiment_name", "exp"]
    whole = launch(fake_checkout, *RESUME, "--num_iters", "4")  # 8 D steps: normalized after steps 3 and 6
    first = launch(fake_checkout, *RESUME, "--num_iters", "2", *where)  # 4 D steps, then saved
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        *["D.pth", "D_optim.pth", "D_san.pth", "G.pth", "G_optim.pth", "state_dict.pth"]
    ]
    assert f"saved SAN state (D step 4) to {tmp_path}/exp/D_san.pth" in capsys.readouterr().out
    assert first["D"].san.san.calls == 4
    if not san_state:
        (tmp_path / "exp" / "D_san.pth").unlink()  # e.g. a checkpoint saved without san_biggan
        with pytest.warns(UserWarning, match="no SAN state at .*D_san.pth"):
            resumed = launch(fake_checkout, *RESUME, "--num_iters", "2", "--resume", *where)
        assert resumed["D"].san.san.calls == 4  # counted afresh: normalized after resumed step 3, not 2
        pairs = zip(resumed["sv_after_D_steps"], whole["sv_after_D_steps"][4:])
        assert any(not torch.equal(a[n], b[n]) for a, b in pairs for n in a)  # the test can fail
        return
    resumed = launch(fake_checkout, *RESUME, "--num_iters", "2", "--resume", *where)
    assert "restored SAN state from" in capsys.readouterr().out and resumed["D"].san.san.calls == 8
    assert_bitwise_equal(state_of(resumed), state_of(whole), "resumed vs uninterrupted")
    assert_bitwise_equal(dict(enumerate(resumed["sv_after_D_steps"])), dict(enumerate(whole["sv_after_D_steps"][4:])))


@pytest.fixture
def utils_module():
    """A BigGAN-like ``utils`` module (the stand-in's save/load_weights, an ``activation_dict``), hooked."""
    utils = types.ModuleType("utils")
    utils.save_weights, utils.load_weights = standin.save_weights, standin.load_weights
    utils.activation_dict = {"relu": nn.ReLU(inplace=False)}
    hooks = install_checkpoint_hooks(utils)
    yield utils
    hooks.remove()
    assert utils.save_weights is standin.save_weights and utils.load_weights is standin.load_weights


def test_suffixes_sn_checkpoints_and_config_objects(restore_standin, utils_module, tmp_path, capsys):  # noqa: F811
    install_discriminator_patch(standin, SANOptions(interval=3, filter_ratio=0.5), verbose=False)
    torch.manual_seed(0)
    G, D = standin.Generator(), standin.Discriminator(D_param="SAN")
    state = {"itr": 0, "config": {"G_activation": utils_module.activation_dict["relu"]}}  # as train.run saves it
    saved = {}
    for suffix in (None, "copy0", "best1"):
        standin.d_step(G, D)
        utils_module.save_weights(G, D, state, str(tmp_path), "exp", suffix)
        saved[suffix] = (D.san.state_dict(), {k: v.clone() for k, v in D.state_dict().items()})
    files = sorted(p.name for p in (tmp_path / "exp").glob("D_san*"))
    assert files == ["D_san.pth", "D_san_best1.pth", "D_san_copy0.pth"]
    assert san_state_file(str(tmp_path), "exp", "copy0") == f"{tmp_path}/exp/D_san_copy0.pth"
    fresh = standin.Discriminator(D_param="SAN")
    utils_module.load_weights(G, fresh, state, str(tmp_path), "exp", "copy0")  # torch.load(weights_only) reads ReLU
    assert isinstance(state["config"]["G_activation"], nn.ReLU) and fresh.san.san.calls == 2
    assert_bitwise_equal(fresh.san.state_dict(), saved["copy0"][0])
    assert_bitwise_equal(fresh.state_dict(), saved["copy0"][1])  # not renormalized: step 2 of interval 3
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        standin.load_weights(G, fresh, state, str(tmp_path), "exp", "best1")  # without the hooks: BigGAN on torch>=2.6
    sn_D = standin.Discriminator()  # an SN run saves no D_san file
    utils_module.save_weights(G, sn_D, state, str(tmp_path), "exp", "sn")
    assert not (tmp_path / "exp" / "D_san_sn.pth").exists()
    with pytest.warns(UserWarning, match="checkpoint of an SN run"):
        utils_module.load_weights(G, fresh, state, str(tmp_path), "exp", "sn")
    for name, layer in fresh.san.layers.items():  # the SN run's W, normalized once (r = 0.5: a subset's constant)
        constant = fresh.san.san.last_constants[name]
        torch.testing.assert_close(layer.weight * constant, sn_D.get_submodule(name).weight, rtol=1e-6, atol=1e-7)
        assert torch.equal(layer.sv0, constant.reshape(1))
    assert max(abs(float(c) - 1) for c in fresh.san.san.last_constants.values()) > 0.05  # the test can fail
    other = standin.Discriminator(D_param="SAN", D_lr=1e-3)
    other.san.san.config["interval"] = 5  # as if resumed with --san_interval 5: the command line wins
    utils_module.load_weights(None, other, state, str(tmp_path), "exp", "best1")
    assert other.san.san.config["interval"] == 5 and other.san.san.calls == 3
    assert (
        "settings differ from the checkpoint's, using the current ones: {'interval': (3, 5)}" in capsys.readouterr().out
    )


def test_bad_san_state_is_refused_before_anything_is_loaded(utils_module, tmp_path):
    G, D = standin.Generator(), standin.Discriminator()
    patch_discriminator(D, seed=1)
    utils_module.save_weights(G, D, {}, str(tmp_path), "exp")
    conv_only = standin.Discriminator()
    patch_discriminator(conv_only, layers=("conv",))
    before = {k: v.clone() for k, v in conv_only.state_dict().items()}
    with pytest.raises(SANBigGANError, match=r"expected SAN state of D's SAN layers \['blocks.0.conv1'"):
        utils_module.load_weights(None, conv_only, {}, str(tmp_path), "exp")
    assert_bitwise_equal(conv_only.state_dict(), before)
    torch.save({"layers": []}, tmp_path / "exp" / "D_san.pth")
    with pytest.raises(SANBigGANError, match=r"expected SAN state of format 'san_biggan\.D_san/1', got None"):
        utils_module.load_weights(None, D, {}, str(tmp_path), "exp")
    with pytest.raises(SANBigGANError, match="already saves/loads SAN state"):
        install_checkpoint_hooks(utils_module)
    with pytest.raises(SANBigGANError, match="expected a function save_weights, got None"):
        install_checkpoint_hooks(types.ModuleType("utils"))
