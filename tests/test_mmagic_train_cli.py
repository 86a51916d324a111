"""``python -m san_mmagic.train``: flags as in mmagic's tools/train.py, early weight checks, and a real run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
)

if not MISSING:
    import torch
    from san_mmagic import train
    from standins import mmagic_fixtures as fx


def test_flags_build_the_config_like_mmagic(tmp_path: Path) -> None:
    args = train.parse_args([str(fx.SNGAN_CNN), "--amp", "--cfg-options", "train_cfg.max_iters=7", "--resume"])
    cfg = train.build_config(args)
    assert cfg.train_cfg.max_iters == 7 and cfg.launcher == "none"
    assert cfg.work_dir == os.path.join("./work_dirs", fx.SNGAN_CNN.stem)
    assert cfg.resume is True and cfg.load_from is None  # --resume alone: the latest checkpoint of the work dir
    for part in ("generator", "discriminator"):  # mmagic's script skips wrappers without a 'type'; we do not
        assert cfg.optim_wrapper[part].type == "AmpOptimWrapper" and cfg.optim_wrapper[part].loss_scale == "dynamic"
    ckpt = tmp_path / "iter_2.pth"
    cfg = train.build_config(train.parse_args([str(fx.ESRGAN), "--resume", str(ckpt), "--work-dir", str(tmp_path)]))
    assert cfg.resume is True and cfg.load_from == str(ckpt) and cfg.work_dir == str(tmp_path)
    cfg = train.build_config(train.parse_args([str(fx.ESRGAN), "--amp"]))
    assert cfg.optim_wrapper.discriminator.type == "AmpOptimWrapper"


def test_missing_weights_exit_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("SAN_PSNR_CHECKPOINT", raising=False)
    assert train.main([str(fx.SR_ADV1), "--work-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{train.PROG}: error: model.init_cfg.checkpoint: checkpoint not found")
    assert "SAN_PSNR_CHECKPOINT" in err[0]  # the shipped configs' variable, not only the config key
    assert not any(tmp_path.iterdir())  # nothing was built or written


@pytest.mark.skipif(not MISSING and not fx.CIFAR_NPZ.is_file(), reason="needs ../shared/data/cifar10")
def test_entry_point_trains_a_shipped_config_offline(tmp_path: Path) -> None:
    """The shipped data pipeline (LocalCIFAR10 via SAN_CIFAR10_ROOT), --no-val: no download, no Inception."""
    root = tmp_path / "cifar"
    fx.cifar_png_folder(root / "train", count=8)  # <root>/train/<class index>/*.png
    config = tmp_path / "tiny_san_sngan.py"
    config.write_text(
        textwrap.dedent(
            f"""
            _base_ = {str(fx.SNGAN_CNN)!r}
            model = dict(generator=dict(base_channels=8), discriminator=dict(base_channels=8))
            train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
            train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2)
            default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=2, by_epoch=False),
                                 logger=dict(interval=1))
            """
        )
    )
    work_dir = tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAN_CIFAR10_ROOT": str(root), "HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [sys.executable, "-m", "san_mmagic.train", str(config), "--work-dir", str(work_dir), "--no-val"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("san_mmagic.train: done") == 1
    checkpoint = torch.load(work_dir / "iter_2.pth", weights_only=True)
    assert checkpoint["san"]["state"]["calls"] == 2
    assert not any(k.endswith("weight_orig") for k in checkpoint["state_dict"])
    logs = list(work_dir.rglob("*.log"))
    assert logs and "san/convs.0:" in logs[0].read_text()
    assert not list((tmp_path / "home").rglob("inception*"))  # no Inception download attempted
