"""SPADE's ``--san-form`` / ``--san-sync-free`` / ``--san-compile`` / ``--san-cuda-graph``: parsed and recorded,
reaching SAN, the reparametrized form trained (W / s at 1 by a float64 FFT), SN checkpoints loading into it,
one-line errors, and the sync-free path's delayed NaN/Inf error raised at SPADE's logging (``get_latest_losses``,
every ``--print_freq`` iterations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from san_spade import SanSpadeError, SanSpadeOptions, patch_discriminator
from san_spade.options import parse_launcher_args
from standins import spade_standin as standin
from standins.fft_reference import one_sparse_gain
from standins.spade_checkout_standin import write_checkout

MIDDLE = [f"discriminator_{d}.model{k}.0.0" for d in (0, 1) for k in (1, 2, 3)]
TESTS = Path(__file__).resolve().parent
REPARAM = SanSpadeOptions(filter_ratio=1.0, form="reparametrize", sync_free=True)


def test_flags_parsed_into_options_and_san() -> None:
    args = parse_launcher_args(["--spade-root", "x", "--san-form", "reparametrize", "--san-sync-free", "on",
                                "--san-compile", "--san-filter-ratio", "1", "--"])  # fmt: skip
    o = args.options
    assert (o.form, o.sync_free, o.compile_step, o.cuda_graph) == ("reparametrize", True, True, False)
    assert parse_launcher_args(["--spade-root", "x", "--san-sync-free", "off"]).options.sync_free is False
    assert parse_launcher_args(["--spade-root", "x"]).options.sync_free is None  # auto
    torch.manual_seed(0)
    session = patch_discriminator(standin.Multiscale(in_channels=5, ndf=8), o)
    assert session.san.config["form"] == "reparametrize" and session.san.config["sync_free"] is True
    assert session.san.config["compile_step"] is True and session.san.config["cuda_graph"] is False
    assert "form=reparametrize, sync_free=on, compiled step" in session.options.summary()
    session.remove()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--san-form", "w/s"], "argument --san-form: invalid choice: 'w/s'"),
        (["--san-sync-free", "maybe"], "argument --san-sync-free: invalid choice: 'maybe'"),
        (["--san-compile", "--san-sync-free", "off"], "--san-compile compiles the sync-free step; expected"),
        (["--san-cuda-graph", "--san-sync-free", "off"], "--san-cuda-graph compiles the sync-free step"),
    ],
)
def test_bad_flags_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(SanSpadeError) as err:
        parse_launcher_args(["--spade-root", "x", *argv, "--"])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only refusal")
@pytest.mark.parametrize("ratio", ["1", "0.25"])  # kernel subsets are allowed with the graph; only CUDA is needed
def test_cuda_graph_without_cuda_is_refused(ratio: str) -> None:
    with pytest.raises(SanSpadeError, match=r"^--san-cuda-graph needs CUDA, but torch.cuda.is_available\(\) is False$"):
        parse_launcher_args(["--spade-root", "x", "--san-cuda-graph", "--san-filter-ratio", ratio, "--"])


def _steps(D: torch.nn.Module, G: torch.nn.Module, opt_D: torch.optim.Optimizer, steps: int) -> None:
    for step in range(steps):
        label = torch.zeros(2, 2, 16, 16)
        label[:, 0, :, :8] = 1
        label[:, 1, :, 8:] = 1
        image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(step)) * 2 - 1
        opt_D.zero_grad()
        standin.d_loss(D, G, label, image).backward()
        opt_D.step()


@pytest.mark.parametrize("from_sn", [False, True], ids=["fresh", "sn-checkpoint"])
def test_reparametrized_d_steps_give_constant_one(from_sn: bool) -> None:
    torch.manual_seed(1)
    sn_state = standin.Multiscale(in_channels=5, ndf=8).state_dict()
    D, G = standin.Multiscale(in_channels=5, ndf=8), standin.Generator(label_nc=2)
    session = patch_discriminator(D, REPARAM)
    if from_sn:  # SPADE's load_network: strict; weight_orig becomes the raw W of W / s
        D.load_state_dict(sn_state, strict=True)
        assert session.converted_layers == MIDDLE
        for name in MIDDLE:
            assert torch.equal(
                session.san.layers[name].parametrizations.weight.original, sn_state[f"{name}.weight_orig"]
            )
    opt_D = torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.5, 0.9))
    session.attach(opt_D)
    session.start((16, 16))
    _steps(D, G, opt_D, 2)
    assert session.san.calls == 2 and session.san.sync_free_active()
    for name in MIDDLE:
        layer = session.san.layers[name]
        assert one_sparse_gain(layer, session.san.input_sizes[name]) == pytest.approx(1.0, rel=1e-5), name
    state = {k: v.clone() for k, v in D.state_dict().items()}  # a reparametrized SAN checkpoint is not "converted"
    again = patch_discriminator(standin.Multiscale(in_channels=5, ndf=8), REPARAM)
    again.netD.load_state_dict(state, strict=True)
    assert again.converted_layers == []


def test_sn_checkpoint_into_a_normalized_reparametrized_d_keeps_its_s() -> None:
    torch.manual_seed(3)
    sn_state = standin.Multiscale(in_channels=5, ndf=8).state_dict()
    session = patch_discriminator(standin.Multiscale(in_channels=5, ndf=8), REPARAM)
    session.start((16, 16))  # s = the constant of D's own initial W (not 1)
    own_s = {n: m.s.clone() for n, m in session.san.scales.items()}
    assert all(abs(float(s) - 1) > 1e-3 for s in own_s.values())
    session.netD.load_state_dict(sn_state, strict=True)
    assert session.converted_layers == MIDDLE
    for name in MIDDLE:
        layer = session.san.layers[name]
        assert torch.equal(layer.parametrizations.weight.original, sn_state[f"{name}.weight_orig"]), name
        assert torch.equal(layer.parametrizations.weight[0].s, own_s[name]), name  # kept until SAN normalizes
    session.san.normalize_(force=True)
    for name in MIDDLE:  # W / s at 1 by an independent float64 FFT
        layer = session.san.layers[name]
        assert one_sparse_gain(layer, session.san.input_sizes[name]) == pytest.approx(1.0, rel=1e-5), name


def _launch(checkout: Path, folder: Path, san: list[str], *spade: str, env: dict[str, str] | None = None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "san_spade", "--spade-root", str(checkout), *san, "--", "--checkpoints_dir",
           str(folder), *spade]  # fmt: skip
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_launcher_records_the_flags_and_raises_a_nan_at_the_next_print(tmp_path: Path) -> None:
    checkout = write_checkout(tmp_path / "checkout")
    san = ["--san-filter-ratio", "1", "--san-form", "reparametrize", "--san-sync-free", "on"]
    run = _launch(checkout, tmp_path, san, "--niter", "4", "--print_freq", "2")
    assert run.returncode == 0, run.stderr
    assert "form=reparametrize, sync_free=on" in run.stdout and "iteration 4 losses" in run.stdout
    record = json.loads((tmp_path / "standin" / "san_opt.json").read_text())
    assert (record["san_form"], record["san_sync_free"], record["san_compile_step"]) == ("reparametrize", True, False)
    txt = (tmp_path / "standin" / "san_opt.txt").read_text()
    assert "san_form: reparametrize" in txt and "[default: rescale]" in txt
    resumed = _launch(checkout, tmp_path, san, "--niter", "2", "--continue_train")
    assert resumed.returncode == 0, resumed.stderr
    assert "(4 D steps so far)" in resumed.stdout and "converted a spectral-norm" not in resumed.stdout
    other = _launch(checkout, tmp_path, ["--san-filter-ratio", "1"], "--niter", "1", "--continue_train")
    assert other.returncode == 2 and other.stderr.strip().splitlines() == [
        "san_spade: error: the D checkpoint is of --san-form reparametrize (layer discriminator_0.model1.0.0), "
        "this run's is rescale"
    ]

    nan = _launch(checkout, tmp_path, san, "--niter", "8", "--print_freq", "4", env={"STANDIN_NAN_AT": "1"})
    assert nan.returncode != 0
    last = nan.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: SAN: layers [") and "had NaN/Inf weights at a sync-free normalization" in last
    assert "discriminator_0.model1.0.0" in last and "get_latest_losses" in nan.stderr  # at the log, not the step
    assert "iteration 4 losses" not in nan.stdout and "standin training finished" not in nan.stdout


def test_checkpoint_of_the_other_form_is_refused_in_one_line() -> None:
    torch.manual_seed(2)
    rescaled = patch_discriminator(standin.Multiscale(in_channels=5, ndf=8), SanSpadeOptions(filter_ratio=1.0))
    state = rescaled.netD.state_dict()
    target = patch_discriminator(standin.Multiscale(in_channels=5, ndf=8), REPARAM)
    before = {k: v.clone() for k, v in target.netD.state_dict().items()}
    with pytest.raises(SanSpadeError, match=r"^the D checkpoint is of --san-form rescale \(layer discriminator_0"):
        target.netD.load_state_dict(state)
    assert all(torch.equal(before[k], v) for k, v in target.netD.state_dict().items())  # nothing was loaded
