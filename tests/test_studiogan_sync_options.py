"""StudioGAN's ``MODEL.d_san_form`` / ``d_san_sync_free`` / ``d_san_compile_step`` / ``d_san_cuda_graph`` (stand-in,
CI): parsed, reaching SAN, the reparametrized form trained and loaded from an SN checkpoint, one-line errors, and the
sync-free path's delayed NaN/Inf error raised at StudioGAN's logging (``log_train_statistics``)."""

from __future__ import annotations

import logging
import types
import warnings
from pathlib import Path

import pytest
import san_studiogan
import torch
from san_studiogan import SANCheckpointWarning, SANConfigError
from san_studiogan.worker_log import wrap_log_train_statistics
from standins import studiogan_standin as sg
from standins.fft_reference import one_sparse_gain
from standins.studiogan_fixtures import build, d_step, write_cfg
from standins.studiogan_fixtures import standin_cfgs as _standin_cfgs
from torch.nn.utils import parametrize


@pytest.fixture
def standin():
    san_studiogan.install(sg, sg, sg, sg)
    yield sg
    san_studiogan.uninstall()


def standin_cfgs(tmp_path: Path, model=None):
    return _standin_cfgs(sg, tmp_path, model)


def test_options_parsed_and_reaching_san(standin, tmp_path):
    cfgs = standin_cfgs(tmp_path, {"d_san_form": "reparametrize", "d_san_sync_free": True})
    options = cfgs.MODULES.d_san
    assert (options.form, options.sync_free, options.compile_step, options.cuda_graph) == (
        "reparametrize", True, False, False
    )  # fmt: skip
    assert standin_cfgs(tmp_path).MODULES.d_san.sync_free is None  # "N/A": SAN's default (on for CUDA weights)
    Gen, Dis = build(cfgs, sg)
    san = cfgs.OPTIMIZATION.d_san
    assert san.config["form"] == "reparametrize" and san.config["sync_free"] is True
    assert san.config["compile_step"] is False and san.config["cuda_graph"] is False
    torch.manual_seed(1)
    for _ in range(2):
        d_step(cfgs, Gen, Dis)
    assert san.calls == 2 and san.sync_free_active()
    for name, layer in san.layers.items():  # W / s at constant 1 (float64 FFT / SVD), s = the raw W's constant
        assert parametrize.is_parametrized(layer, "weight"), name
        assert one_sparse_gain(layer, san.input_sizes.get(name)) == pytest.approx(1.0, rel=1e-5), name
        raw, s = layer.parametrizations.weight.original, float(layer.parametrizations.weight[0].s)
        assert one_sparse_gain(layer, san.input_sizes.get(name), raw) == pytest.approx(s, rel=1e-5), name


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"d_san_form": "authors"}, "MODEL.d_san_form: expected one of ('rescale', 'reparametrize'), got 'authors'"),
        ({"d_san_sync_free": "yes"}, "MODEL.d_san_sync_free: expected \"N/A\", True or False, got 'yes'"),
        ({"d_san_compile_step": 1}, "MODEL.d_san_compile_step: expected True or False, got 1"),
        ({"d_san_cuda_graph": "on"}, "MODEL.d_san_cuda_graph: expected True or False, got 'on'"),
        (
            {"d_san_compile_step": True, "d_san_sync_free": False},
            'MODEL.d_san_compile_step: True compiles the sync-free step; expected d_san_sync_free "N/A" or True',
        ),
    ],
)
def test_bad_value_is_one_clear_line(standin, tmp_path, model, message):
    with pytest.raises(SANConfigError) as err:
        standin_cfgs(tmp_path, model)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only refusal")
@pytest.mark.parametrize("ratio", [1.0, 0.5])  # kernel subsets are allowed with the graph; only CUDA is needed
def test_cuda_graph_without_cuda_is_refused(standin, tmp_path, ratio):
    with pytest.raises(SANConfigError, match=r"MODEL\.d_san_cuda_graph: True needs CUDA"):
        standin_cfgs(tmp_path, {"d_san_cuda_graph": True, "d_san_filter_ratio": ratio})


def test_sync_free_nan_raised_at_the_logging_step(standin, tmp_path):
    cfgs = standin_cfgs(tmp_path, {"d_san_sync_free": True})
    Gen, Dis = build(cfgs, sg)
    san = cfgs.OPTIMIZATION.d_san
    records: list[str] = []
    logger = logging.getLogger("san-studiogan-sync-test")
    logger.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r.getMessage())})())
    logger.setLevel(logging.INFO)
    worker = types.SimpleNamespace(OPTIMIZATION=cfgs.OPTIMIZATION, logger=logger, wandb_step=1)
    log_train_statistics = wrap_log_train_statistics(lambda self, step, *a: None)
    torch.manual_seed(2)
    d_step(cfgs, Gen, Dis)
    d_step(cfgs, Gen, Dis)
    log_train_statistics(worker, 1)
    assert len(records) == 1 and san.sync_free_active()
    with torch.no_grad():
        san.layers["conv1"].weight.view(-1)[0] = float("nan")
    d_step(cfgs, Gen, Dis)  # no error here: the sync-free step leaves the layer and reports later
    assert san.calls == 3
    with pytest.raises(ValueError, match=r"^SAN: layers \[.*'conv1'.*\] had NaN/Inf weights at a sync-free"):
        log_train_statistics(worker, 3)
    assert len(records) == 1  # raised before the constants line


def test_sn_checkpoint_loads_into_a_reparametrized_san_d(standin, tmp_path):
    sn = sg.Configurations(write_cfg(tmp_path, {"MODEL": {"apply_d_sn": True}}, "sn.yaml"))
    sn.update_cfgs({"seed": 3, "mixed_precision": False}, super="RUN")
    Gen, sn_dis = sg.build(sn, 0, broadcast=False)
    sg.train_d(sn, Gen, sn_dis, 2)
    sg.save(sn, Gen, sn_dis, 4, str(tmp_path))
    sn_weights = sn_dis.state_dict()
    sn_moments = {n: sn.OPTIMIZATION.d_optimizer.state[p]["exp_avg"] for n, p in sn_dis.named_parameters()}
    cfgs = sg.Configurations(
        write_cfg(tmp_path, {"MODEL": {"apply_d_san": True, "d_san_form": "reparametrize"}}, "san.yaml")
    )
    cfgs.update_cfgs({"seed": 3, "mixed_precision": False}, super="RUN")
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    o = cfgs.OPTIMIZATION
    with pytest.warns(SANCheckpointWarning, match=r"has no SAN state .*weight_orig\) were converted"):
        sg.load_StudioGAN_ckpts(str(tmp_path), False, Gen, Dis, o.g_optimizer, o.d_optimizer, True, cfgs.RUN)
    for name, param in Dis.named_parameters():  # raw weights and Adam moments from their SN counterparts
        sn_name = name.replace(".parametrizations.weight.original", ".weight_orig")
        assert torch.equal(param, sn_weights[sn_name]), name
        assert torch.equal(o.d_optimizer.state[param]["exp_avg"], sn_moments[sn_name]), name
    sg.train_d(cfgs, Gen, Dis, 1, start=4)
    san = o.d_san
    assert san.calls == 1
    for name, layer in san.layers.items():
        assert one_sparse_gain(layer, san.input_sizes.get(name)) == pytest.approx(1.0, rel=1e-5), name


def test_reparametrized_resume_is_bit_for_bit(standin, tmp_path):
    """4 steps + save + load into fresh objects + 4 steps == 8 steps, in the reparametrized sync-free form."""
    model = {"MODEL": {"apply_d_san": True, "d_san_form": "reparametrize", "d_san_sync_free": True,
                       "d_san_filter_ratio": 0.5, "d_san_interval": 3}}  # fmt: skip
    cfgs = sg.Configurations(write_cfg(tmp_path, model, "san.yaml"))
    cfgs.update_cfgs({"seed": 3, "mixed_precision": False}, super="RUN")
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.train_d(cfgs, Gen, Dis, 8)
    reference = Dis.state_dict()
    assert any(k.endswith("parametrizations.weight.0.s") for k in reference)
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    sg.train_d(cfgs, Gen, Dis, 4)
    sg.save(cfgs, Gen, Dis, 4, str(tmp_path))
    Gen, Dis = sg.build(cfgs, 0, broadcast=False)
    o = cfgs.OPTIMIZATION
    with warnings.catch_warnings():
        warnings.simplefilter("error", SANCheckpointWarning)
        sg.load_StudioGAN_ckpts(str(tmp_path), False, Gen, Dis, o.g_optimizer, o.d_optimizer, True, cfgs.RUN)
    assert o.d_san.calls == 4
    sg.train_d(cfgs, Gen, Dis, 4, start=4)
    assert all(torch.equal(reference[k], v) for k, v in Dis.state_dict().items())
