"""BigGAN's ``--san_form`` / ``--san_sync_free`` / ``--san_compile_step`` / ``--san_cuda_graph`` (stand-in, CI):
parsed and reaching SAN, ``--san_form reparametrize`` refused in one line (this adapter's SN-layout layers and
Adam16 master-copy path do not fit a forward ``W / s``), and the sync-free path's delayed NaN/Inf error raised at
BigGAN's SV log (``utils.get_SVs`` every ``--sv_log_interval`` iterations)."""

from __future__ import annotations

import pytest
import torch
from san_biggan import BigGANCheckout, SANBigGANError, SANOptions
from san_biggan.launcher import main, split_train_args
from san_biggan.options import REPARAMETRIZE_REFUSED, options_from_namespaces
from standins import biggan_standin as standin
from standins.fft_reference import one_sparse_gain
from test_biggan_adapter import restore_standin  # noqa: F401  (a fixture)
from test_biggan_launcher import fake_checkout  # noqa: F401  (a fixture)
from torch import nn


@pytest.fixture
def checkout(fake_checkout):  # noqa: F811
    """The launcher tests' stand-in checkout (flat one-line modules re-exporting the stand-in, ``get_SVs`` too)."""
    return fake_checkout


def test_flags_parsed_into_options() -> None:
    ns, rest = split_train_args(["--san_sync_free", "on", "--san_compile_step", "--seed", "3"])
    options = options_from_namespaces([ns], default_seed=3)
    assert (options.form, options.sync_free, options.compile_step, options.cuda_graph) == ("rescale", True, True, False)
    assert rest == ["--seed", "3"]
    assert options.san_kwargs()["sync_free"] is True and options.san_kwargs()["compile_step"] is True
    default = options_from_namespaces([split_train_args([])[0]], default_seed=0)
    assert (default.form, default.sync_free, default.compile_step) == ("rescale", None, False)


def test_sync_free_reaches_san_and_d_steps_give_constant_one(checkout) -> None:
    argv = ["--biggan-root", str(checkout), "--", "--D_param", "SAN", "--san_sync_free", "on", "--sv_log_interval", "1"]
    assert main(argv) == 0
    run = standin.RUNS[-1]
    san = run["D"].san.san
    assert san.config["sync_free"] is True and san.config["form"] == "rescale" and san.sync_free_active()
    assert san.config["compile_step"] is False and san.config["cuda_graph"] is False
    assert san.calls == 4 and len(run["svs"]) == 2  # 2 iterations x 2 D steps; SVs logged after each iteration
    for name, layer in san.layers.items():  # float64 FFT / SVD: each SAN weight at 1 after the last D step
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            assert one_sparse_gain(layer, san.input_sizes.get(name)) == pytest.approx(1.0, rel=1e-5), name
    assert run["svs"][-1] == {k: pytest.approx(v) for k, v in standin.get_SVs(run["D"], "D").items()}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--san_form", "reparametrize"], REPARAMETRIZE_REFUSED),
        (["--san_form", "w/s"], "argument --san_form: invalid choice: 'w/s'"),
        (["--san_sync_free", "maybe"], "argument --san_sync_free: invalid choice: 'maybe'"),
        (["--san_compile_step", "--san_sync_free", "off"], "compile_step/cuda_graph compile the sync-free step"),
        (["--san_cuda_graph", "--san_filter_ratio", "0.5", "--san_sync_free", "off"], "compile the sync-free step"),
    ],
)
def test_bad_flags_one_line_nothing_patched(checkout, capsys, flags, message) -> None:
    init = standin.Discriminator.__dict__["__init__"]
    assert main(["--biggan-root", str(checkout), "--", "--D_param", "SAN", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("san_biggan: error:") and message in err[0], err
    assert standin.Discriminator.__dict__["__init__"] is init


def test_reparametrize_refused_by_the_options_themselves() -> None:
    with pytest.raises(SANBigGANError, match=r"^--san_form reparametrize is not supported by san_biggan: "):
        SANOptions(form="reparametrize").validate()


def test_sync_free_nan_raised_at_the_next_sv_log(checkout, monkeypatch) -> None:
    steps: list[int] = []
    d_step = standin.d_step

    def d_step_with_nan(G, D, batch=4):  # one NaN into a SAN conv weight before the 3rd D step
        steps.append(1)
        if len(steps) == 3:
            with torch.no_grad():
                D.san.san.layers["blocks.0.conv1"].weight.view(-1)[0] = float("nan")
        d_step(G, D, batch)

    monkeypatch.setattr(standin, "d_step", d_step_with_nan)
    argv = ["--biggan-root", str(checkout), "--", "--D_param", "SAN", "--san_sync_free", "on", "--num_D_steps", "1",
            "--num_iters", "6", "--sv_log_interval", "4"]  # fmt: skip
    with pytest.raises(ValueError, match=r"^SAN: layers \[.*'blocks\.0\.conv1'.*\] had NaN/Inf weights at a sync-free"):
        main(argv)
    assert len(steps) == 4  # raised at the SV log after iteration 4, not at the NaN's step 3
    utils = BigGANCheckout(checkout).import_module("utils")
    assert utils.get_SVs is standin.get_SVs  # the launcher removed its wrapper on the way out
