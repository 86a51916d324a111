"""``python -m san_spade`` on a miniature checkout with SPADE's layout (CI, no real checkout needed).

Runs the launcher in a subprocess on :mod:`standins.spade_checkout_standin`: the patch is applied at
construction, SAN attaches to ``optimizer_D``, options are recorded next to ``opt.txt``, SAN state is
saved beside ``<epoch>_net_D.pth`` and resumed; spectral-norm checkpoints convert. Bad input is one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from san_spade import SanSpadeOptions, patch_discriminator
from san_spade.launcher import main
from standins import spade_standin as standin
from standins.spade_checkout_standin import write_checkout

from san_core import conv_constant

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return write_checkout(tmp_path_factory.mktemp("spade_checkout"))


def launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "san_spade", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def train_args(checkout: Path, folder: Path, *extra: str, san: tuple[str, ...] = ()) -> list[str]:
    return ["--spade-root", str(checkout), *san, "--", "--checkpoints_dir", str(folder), *extra]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("san_spade: error: "), err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--spade-root", "/nonexistent/SPADE", "--"], "--spade-root /nonexistent/SPADE: no such directory"),
        (["--spade-root", "{tmp}", "--"], "is not an NVlabs/SPADE checkout: missing test.py, options/train_options"),
        (["--spade-root", "{ckpt}", "--san-ratio", "0.3", "--"], "unrecognized arguments: --san-ratio 0.3"),
        (["--spade-root", "{ckpt}", "--name", "x"], "SPADE's own options go after '--'"),
        (["--spade-root", "{ckpt}", "--san-gain", "big"], "expected --san-gain to be a number, got 'big'"),
        (["--spade-root", "{ckpt}", "--san-filter-ratio", "0"], "expected --san-filter-ratio in (0, 1], got 0.0"),
        (["--spade-root", "{ckpt}", "--", "--gpu_ids", "0,1"], "sync_batchnorm is missing and --gpu_ids asks for"),
    ],
)
def test_bad_input_is_one_line(argv, message, tmp_path, checkout, capsys, monkeypatch):
    (tmp_path / "train.py").write_text("")
    monkeypatch.setattr(sys, "path", list(sys.path))
    argv = [a.format(tmp=tmp_path, ckpt=checkout) for a in argv]
    assert main(argv) == 2
    assert message in error_line(capsys)
    assert str(checkout) not in sys.path and Path.cwd() != checkout


def test_not_spade_discriminator(tmp_path, checkout, capsys):
    fake = write_checkout(tmp_path / "other")
    (fake / "models/networks/discriminator.py").write_text("class D: pass\n")
    assert main(["--spade-root", str(fake), "--"]) == 2
    assert "defines neither MultiscaleDiscriminator nor NLayerDiscriminator" in error_line(capsys)


def san_D(folder: Path, options: SanSpadeOptions):
    """A stand-in D patched like the launcher's, loaded strict from the run's checkpoint and SAN state."""
    D = standin.Multiscale(in_channels=5, ndf=8)
    session = patch_discriminator(D, options)
    D.load_state_dict(torch.load(folder / "latest_net_D.pth"), strict=True)
    session.load_state_dict(torch.load(folder / "latest_net_D_san.pth", weights_only=True))
    return session


def test_train_records_options_and_normalizes(checkout, tmp_path):
    run = launch(train_args(checkout, tmp_path, san=("--san-filter-ratio", "1")), tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "using the single-process fallback" in out and "Synchronized-BatchNorm-PyTorch" in out
    assert "SAN normalizes 6 D convs" in out and "discriminator_1.model3.0.0" in out
    assert "left as they are: discriminator_0.model0.0" in out and "standin training finished" in out
    folder = tmp_path / "standin"
    assert "beta1: 0.5" in (folder / "opt.txt").read_text()
    record = json.loads((folder / "san_opt.json").read_text())
    assert record["san_filter_ratio"] == 1.0 and record["beta1_override"] == "--beta1 0.5 added"
    assert (folder / "san_opt.txt").read_text().startswith("----------------- SAN options")
    session = san_D(folder, SanSpadeOptions(filter_ratio=1.0))
    assert session.san.calls == 2 and session.resumed
    for name, layer in session.san.layers.items():
        size = session.san.input_sizes[name]
        assert abs(float(conv_constant(layer.weight, size, stride=layer.stride)) - 1) < 1e-4
    G_state = torch.load(folder / "latest_net_G.pth")
    assert {"head.weight_orig", "head.weight_u", "body.weight_orig", "body.weight_v"} <= set(G_state)

    resumed = launch(train_args(checkout, tmp_path, "--continue_train", san=("--san-filter-ratio", "1")), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed SAN state" in resumed.stdout and "(2 D steps so far)" in resumed.stdout
    assert "constant now (resumed)" in resumed.stdout
    assert san_D(folder, SanSpadeOptions(filter_ratio=1.0)).san.calls == 4


def test_continue_from_spectral_norm_checkpoint_under_data_parallel(checkout, tmp_path):
    folder = tmp_path / "standin"
    folder.mkdir()
    torch.manual_seed(3)
    torch.save(standin.Generator(label_nc=2).state_dict(), folder / "latest_net_G.pth")
    torch.save(standin.Multiscale(in_channels=5, ndf=8).state_dict(), folder / "latest_net_D.pth")
    run = launch(train_args(checkout, tmp_path, "--continue_train", "--gpu_ids", "0"), tmp_path)
    assert run.returncode == 0, run.stderr
    assert "trainer model: DataParallel" in run.stdout  # the fallback wrapper; SAN sits on the master copy
    assert "converted a spectral-norm D checkpoint for 6 layers" in run.stdout
    assert "no SAN state at" in run.stdout and "constant before the initial normalization" in run.stdout
    assert "weight_orig" not in "".join(torch.load(folder / "latest_net_D.pth"))


def test_launcher_bad_D_and_test_script(checkout, tmp_path):
    run = launch(train_args(checkout, tmp_path, "--n_layers_D", "1"), tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "san_spade: error: the discriminator MultiscaleDiscriminator has nothing to patch: no middle convs "
        "(e.g. --n_layers_D 1); add --san-include-first-last; its convs: discriminator_0.model0.0, "
        "discriminator_0.model1.0, discriminator_1.model0.0, discriminator_1.model1.0"
    ]
    assert not (tmp_path / "standin" / "latest_net_D.pth").exists()
    test = launch(["--spade-root", str(checkout), "--keep-cwd", "--", "test.py", "--name", "t"], tmp_path)
    assert test.returncode == 0, test.stderr
    assert "test.py builds no discriminator" in test.stdout and "standin test ran for t" in test.stdout
    assert "working directory" not in test.stdout
