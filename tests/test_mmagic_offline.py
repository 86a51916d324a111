"""MMagic offline: local CIFAR-10 layouts, one-line errors for missing data/weights/Inception, up-front CLI checks.

Nothing here builds a Runner (test_mmagic_train_cli.py trains a shipped config offline end to end):
``train.main`` stops in its preflight, so these run in well under a second each.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import pytest

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
)

if not MISSING:
    import numpy as np
    import torch
    from san_mmagic import LocalCIFAR10, MissingDataError, train
    from san_mmagic.local_data import CIFAR10_CLASSES, CIFAR10_PREPARE, find_cifar10
    from standins import mmagic_fixtures as fx

needs_cifar = pytest.mark.skipif(not MISSING and not fx.CIFAR_NPZ.is_file(), reason="needs ../shared/data/cifar10")


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = train.main(list(argv))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(train.PROG)]
    return code, lines


@needs_cifar
def test_image_folder_and_torchvision_batches_give_mmagic_samples(tmp_path: Path) -> None:
    data = np.load(fx.CIFAR_NPZ)
    fx.cifar_png_folder(tmp_path / "png" / "train", count=12)  # class folders named by index
    pickles = tmp_path / "tv" / "cifar10" / "cifar-10-batches-py"  # mmagic's <root>/cifar10 prefix, torchvision's
    pickles.mkdir(parents=True)
    flat = data["x_train"][:10].transpose(0, 3, 1, 2).reshape(10, -1)
    for i in range(1, 6):
        entry = {"data": flat[2 * i - 2 : 2 * i], "labels": [int(v) for v in data["y_train"][2 * i - 2 : 2 * i]]}
        (pickles / f"data_batch_{i}").write_bytes(pickle.dumps(entry))
    png = LocalCIFAR10(data_root=str(tmp_path / "png"), pipeline=[])
    batches = LocalCIFAR10(data_root=str(tmp_path / "tv"), pipeline=[])
    assert len(png) == 12 and len(batches) == 10 and png.metainfo["classes"] == CIFAR10_CLASSES
    by_label: dict[int, list] = {}
    for img, label in zip(data["x_train"][:12], data["y_train"][:12]):
        by_label.setdefault(int(label), []).append(img)
    expected = [img for label in sorted(by_label) for img in by_label[label]]  # sorted (class, file) order
    for i, sample in enumerate(png.get_data_info(i) for i in range(12)):
        assert sample["gt_channel_order"] == "RGB" and np.array_equal(sample["gt"], expected[i])  # PNG: lossless
    for i in range(10):
        sample = batches.get_data_info(i)
        assert np.array_equal(sample["gt"], data["x_train"][i]) and sample["gt_label"] == int(data["y_train"][i])


def test_class_name_folders_as_in_the_repository_archive(tmp_path: Path) -> None:
    import cv2

    for name in ("airplane", "truck"):
        (tmp_path / "cifar10" / "train" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "cifar10" / "train" / name / "0000.jpg"), np.zeros((32, 32, 3), np.uint8))
    dataset = LocalCIFAR10(data_root=str(tmp_path), pipeline=[])
    assert [dataset.get_data_info(i)["gt_label"] for i in range(2)] == [0, 9]
    (tmp_path / "cifar10" / "train" / "zebra").mkdir()
    cv2.imwrite(str(tmp_path / "cifar10" / "train" / "zebra" / "0.png"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="class folder 'zebra': expected one of CIFAR-10's class names"):
        LocalCIFAR10(data_root=str(tmp_path), pipeline=[])
    with pytest.raises(ValueError, match="download=True is not supported"):
        LocalCIFAR10(data_root=str(tmp_path), pipeline=[], download=True)


def test_missing_root_one_line_and_nothing_created(tmp_path: Path, monkeypatch, capsys) -> None:
    missing = tmp_path / "nonexistent"
    monkeypatch.setenv("SAN_CIFAR10_ROOT", str(missing))
    for config in (fx.SNGAN_CNN, fx.SNGAN_RESNET, fx.BIGGAN, fx.SNGAN_CNN_SN):
        code, lines = _main(capsys, str(config), "--work-dir", str(tmp_path / "work"), "--no-val")
        assert code == 2 and len(lines) == 1, lines
        assert "SAN_CIFAR10_ROOT" in lines[0] and "train/<class>/*.png|jpg" in lines[0]
        assert CIFAR10_PREPARE in lines[0] and str(missing) in lines[0]
    assert not missing.exists() and not (tmp_path / "work").exists()
    with pytest.raises(MissingDataError, match="SAN_CIFAR10_ROOT"):  # mmagic's tools/train.py path: the data set
        LocalCIFAR10(data_root=str(missing), pipeline=[])
    assert not missing.exists()
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(MissingDataError, match="holds no CIFAR-10 train split"):
        find_cifar10(str(tmp_path / "empty"))


@needs_cifar
def test_inception_missing_names_no_val(tmp_path: Path, monkeypatch, capsys) -> None:
    fx.cifar_png_folder(tmp_path / "cifar" / "train", count=2)
    monkeypatch.setenv("SAN_CIFAR10_ROOT", str(tmp_path / "cifar"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # mmagic's Inception cache: ~/.cache/openmmlab/mmagic
    code, lines = _main(capsys, str(fx.SNGAN_CNN), "--work-dir", str(tmp_path / "work"))
    assert code == 2 and len(lines) == 1 and "needs Inception weights" in lines[0] and "--no-val" in lines[0]
    assert not (tmp_path / "home").exists() and not (tmp_path / "work").exists()
    cfg = train.preflight(train.parse_args([str(fx.SNGAN_CNN), "--no-val"]))
    assert not isinstance(cfg, str) and cfg.val_dataloader is None and cfg.val_evaluator is None
    assert "save_best" not in cfg.default_hooks.checkpoint
    cache = tmp_path / "home" / ".cache" / "openmmlab" / "mmagic"
    cache.mkdir(parents=True)
    (cache / "inception-2015-12-05.pt").write_bytes(b"")
    cfg = train.preflight(train.parse_args([str(fx.SNGAN_CNN)]))
    assert not isinstance(cfg, str) and cfg.val_dataloader is not None  # weights there: validation stays


@pytest.mark.parametrize(
    ("config", "env"),
    [(fx.ESRGAN, "SAN_ESRGAN_PSNR_CHECKPOINT"), (fx.SR_ADV1, "SAN_PSNR_CHECKPOINT")] if not MISSING else [],
)
def test_sr_missing_files_name_their_variable(config: Path, env: str, tmp_path: Path, monkeypatch, capsys) -> None:
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    monkeypatch.setenv("SAN_VGG19_PATH", str(weights))
    monkeypatch.delenv(env, raising=False)
    code, lines = _main(capsys, str(config), "--no-val")
    assert code == 2 and len(lines) == 1 and env in lines[0] and "init_cfg.checkpoint" in lines[0]
    monkeypatch.setenv(env, str(weights))
    monkeypatch.setenv("SAN_DIV2K_ROOT", str(tmp_path / "absent"))
    code, lines = _main(capsys, str(config), "--no-val")
    assert code == 2 and len(lines) == 1 and "SAN_DIV2K_ROOT" in lines[0] and "absent/DIV2K" in lines[0]
    (tmp_path / "div" / "DIV2K").mkdir(parents=True)
    monkeypatch.setenv("SAN_DIV2K_ROOT", str(tmp_path / "div"))
    code, lines = _main(capsys, str(config), "--no-val")
    assert code == 2 and len(lines) == 1 and "meta_info_DIV2K800sub_GT.txt" in lines[0] and "SAN_DIV2K_ROOT" in lines[0]


def test_sr_checkpoints_go_to_the_work_dir() -> None:
    for config in fx.SR_CONFIGS:
        cfg = train.build_config(train.parse_args([str(config), "--work-dir", "/tmp/w"]))
        assert cfg.work_dir == "/tmp/w" and cfg.default_hooks.checkpoint.get("out_dir") is None  # = runner.work_dir


def test_nonexistent_config_and_amp_without_gpu(tmp_path: Path, capsys) -> None:
    code, lines = _main(capsys, str(tmp_path / "nonexistent.py"))
    assert code == 2 and lines == [f"{train.PROG}: error: config file not found: {str(tmp_path / 'nonexistent.py')!r}"]
    if torch.cuda.is_available():
        return
    code, lines = _main(capsys, str(fx.SNGAN_CNN), "--amp", "--work-dir", str(tmp_path / "work"))
    assert code == 2 and len(lines) == 1 and "--amp needs a CUDA GPU" in lines[0]
    assert not (tmp_path / "work").exists()


def test_cpu_distributed_compat_sets_gloo_and_cpu_ddp(monkeypatch) -> None:
    from mmengine.config import Config
    from san_mmagic import compat

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", torch.cuda.set_device)  # restored after the test
    cfg = Config.fromfile(str(fx.SNGAN_CNN))
    assert compat.allow_cpu_distributed(cfg)
    assert cfg.env_cfg.dist_cfg.backend == "gloo" and cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == "MMSeparateDistributedDataParallel"  # the config's own wrapper, kept
    torch.cuda.set_device(1)  # a no-op now (would raise without CUDA)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not compat.allow_cpu_distributed(Config.fromfile(str(fx.SNGAN_CNN)))


@pytest.mark.slow
@needs_cifar
def test_torchrun_two_cpu_ranks(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 -m san_mmagic.train CONFIG --launcher pytorch`` on CPUs (gloo): one 'done'."""
    import subprocess
    import sys
    import textwrap

    root = tmp_path / "cifar"
    fx.cifar_png_folder(root / "train", count=8)
    (tmp_path / "rank_dump.py").write_text(  # each rank saves its D after training
        textwrap.dedent(
            """
            import torch
            from mmengine.dist import get_rank
            from mmengine.hooks import Hook
            from mmengine.registry import HOOKS

            @HOOKS.register_module()
            class RankDumpHook(Hook):
                def after_train(self, runner):
                    d = runner.model.module.discriminator.module.state_dict()
                    torch.save(d, f"{runner.work_dir}/rank{get_rank()}_D.pth")
            """
        )
    )
    config = tmp_path / "tiny.py"
    config.write_text(
        textwrap.dedent(
            f"""
            _base_ = {str(fx.SNGAN_CNN)!r}
            custom_imports = dict(imports=['san_mmagic', 'rank_dump'], allow_failed_imports=False)
            model = dict(generator=dict(base_channels=8), discriminator=dict(base_channels=8))
            train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
            train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2)
            default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=2, by_epoch=False))
            custom_hooks = [dict(type='SANHook', module='discriminator'), dict(type='RankDumpHook')]
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAN_CIFAR10_ROOT": str(root), "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    work = tmp_path / "work"
    run = subprocess.run(
        [
            *torchrun,
            "-m",
            "san_mmagic.train",
            str(config),
            "--launcher",
            "pytorch",
            "--no-val",
            "--work-dir",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("san_mmagic.train: done") == 1
    checkpoint = torch.load(work / "iter_2.pth", weights_only=True)
    assert checkpoint["san"]["state"]["calls"] == 2
    ranks = [torch.load(work / f"rank{r}_D.pth", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:  # DDP all-reduced the gradients, SAN normalized identically: bit-identical D
        assert torch.equal(ranks[0][key], ranks[1][key]), key
