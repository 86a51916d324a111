"""SAN's per-layer constants in StudioGAN's log: the wrapper (CI) and the real ``WORKER.log_train_statistics``."""

from __future__ import annotations

import importlib.util
import logging
import types
from datetime import datetime

import pytest
import torch
from san_studiogan.worker_log import constants_line, wrap_log_train_statistics
from standins.studiogan_fixtures import CONFIGS, build, real_host
from torch import nn

from san_core import apply_san


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger(name: str) -> tuple[logging.Logger, _Records]:
    logger, records = logging.getLogger(name), _Records()
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    return logger, records


def test_wrapper_logs_each_layer_constant_after_the_original() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 1))
    san = apply_san(critic, example_input=torch.zeros(1, 3, 8, 8))
    logger, records = _logger("san-worker-log-test")
    logged: list[tuple[dict, int]] = []
    wandb = types.SimpleNamespace(run=object(), log=lambda values, step: logged.append((values, step)))
    calls: list[int] = []
    wrapped = wrap_log_train_statistics(lambda self, step, *a: calls.append(step) or "orig", wandb)
    worker = types.SimpleNamespace(OPTIMIZATION=types.SimpleNamespace(d_san=san), logger=logger, wandb_step=5)
    assert wrapped(worker, 4) == "orig" and calls == [4] and records.lines == []  # no D step yet: nothing to log
    expected = {n: float(c) for n, c in san.constants().items()}
    san.normalize_(force=True)
    assert wrapped(worker, 4, 0.0) == "orig"
    assert records.lines == [constants_line(san, 5)]
    assert records.lines[0].startswith("SAN constants of D (step 5, before the last rescale): 0=")
    for name, value in expected.items():
        assert f"{name}={value:.4f}" in records.lines[0]
    assert logged == [({f"Dis_san/{n}": pytest.approx(v) for n, v in expected.items()}, 5)]
    worker.OPTIMIZATION = types.SimpleNamespace()  # an SN run: the original only
    wrapped(worker, 5)
    assert len(records.lines) == 1 and calls == [4, 4, 5]


@pytest.fixture(scope="module")
def studiogan():
    yield from real_host()


def test_real_worker_logs_san_constants(studiogan, tmp_path) -> None:
    """StudioGAN's own log_train_statistics (wandb disabled), wrapped when SAN is attached in define_optimizer."""
    missing = [m for m in ("wandb", "sklearn", "h5py", "PIL") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"StudioGAN's worker.py imports {', '.join(missing)} (pip install -e '.[studiogan]')")
    import wandb
    import worker  # StudioGAN's, importable from the real host

    config, model = studiogan
    original = worker.WORKER.__dict__["log_train_statistics"]
    cfgs = config.Configurations(str(CONFIGS / "SNGAN-CNN-SAN.yaml"))
    Gen, Dis = build(cfgs, model)
    assert worker.WORKER.__dict__["log_train_statistics"].__san_studiogan_original__ is original
    san = cfgs.OPTIMIZATION.d_san
    san.normalize_(force=True)
    cfgs.RUN.save_dir, cfgs.RUN.print_freq = str(tmp_path), 10
    logger, records = _logger("san-real-worker-log-test")
    self = types.SimpleNamespace(
        **{k: getattr(cfgs, k) for k in ("MODEL", "LOSS", "AUG", "MISC", "OPTIMIZATION", "RUN", "STYLEGAN")},
        start_time=datetime.now(),
        topk=0,
        aa_p=0.0,
        logger=logger,
        loss_list_dict={"gen_loss": [], "dis_loss": [], "cls_loss": []},
        run_name="san-log-test",
        Gen=Gen,
        Dis=Dis,
    )
    wandb.init(mode="disabled")
    try:
        worker.WORKER.log_train_statistics(self, 9, torch.tensor(0.0), torch.tensor(1.0), torch.tensor(2.0))
    finally:
        wandb.finish()
    assert records.lines[0].startswith("Step:     10 ")  # StudioGAN's own line, then ours
    assert records.lines[1] == constants_line(san, 10) and f"{next(iter(san.layers))}=" in records.lines[1]
