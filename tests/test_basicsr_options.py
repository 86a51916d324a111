"""``python -m san_basicsr``'s option parsing with the real BasicSR: bad SAN options and missing local files stop at
option parsing with one line; the shipped option files parse and build their SAN critics."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

MISSING = [m for m in ("basicsr", "realesrgan") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [basicsr] extra (pip install "sparsity-aware-norm[basicsr]"); missing {MISSING}'
)

if not MISSING:
    import san_basicsr
    from basicsr.archs import build_network, vgg_arch
    from san_basicsr.launcher import main
    from standins import basicsr_fixtures as fx

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "basicsr"
ESRGAN = [CONFIGS / "ESRGAN" / f"train_ESRGAN_SAN_x4_adv1e-{k}.yml" for k in (1, 2)]
REAL_ESRGAN = CONFIGS / "RealESRGAN" / "train_realesrgan_SAN_x4plus.yml"
ENV = ("SAN_DIV2K_ROOT", "SAN_ESRGAN_PSNR_CHECKPOINT", "SAN_DF2K_ROOT", "SAN_REALESRNET_CHECKPOINT", "SAN_VGG19_PATH")


@pytest.fixture
def local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty stand-ins for every local file/folder the shipped options read, named by the documented variables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(vgg_arch, "VGG_PRETRAIN_PATH", vgg_arch.VGG_PRETRAIN_PATH)  # restored after the test
    for sub in ("DIV2K/DIV2K_train_HR_sub", "DIV2K/DIV2K_train_LR_bicubic/X4_sub", "Set14/GTmod12", "Set14/LRbicx4"):
        (tmp_path / "div2k" / sub).mkdir(parents=True)
    (tmp_path / "df2k" / "meta_info").mkdir(parents=True)
    (tmp_path / "df2k" / "meta_info" / "meta_info_DF2Kmultiscale+OST_sub.txt").write_text("x.png\n")
    for name in ("psnr.pth", "realesrnet.pth", "vgg19.pth"):
        (tmp_path / name).write_bytes(b"")
    values = dict(zip(ENV, ("div2k", "psnr.pth", "df2k", "realesrnet.pth", "vgg19.pth")))
    for key, value in values.items():
        monkeypatch.setenv(key, str(tmp_path / value))
    yield tmp_path
    san_basicsr.uninstall()


def _parse(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from san_basicsr import patch

    san_basicsr.install()
    monkeypatch.setattr(sys, "argv", ["san_basicsr", "-opt", str(path)])
    opt, _ = patch._parse_options(os.getcwd(), is_train=True)
    return opt


@pytest.mark.parametrize("path", [*ESRGAN, REAL_ESRGAN], ids=lambda p: p.name)
def test_shipped_options_parse_and_build_their_san_critic(
    path: Path, local_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opt = _parse(path, monkeypatch)
    train = opt["train"]
    assert opt["path"]["vgg19"] == str(local_files / "vgg19.pth") == vgg_arch.VGG_PRETRAIN_PATH
    assert train["optim_d"]["betas"] == [0.5, 0.9]
    net = build_network(opt["network_d"])
    assert net.san.config["filter_ratio"] == 1.0 and net.san.config["interval"] == 1
    if path in ESRGAN:
        assert opt["model_type"] == "ESRGANModel" and type(net).__name__ == "VGGStyleDiscriminatorSAN"
        assert train["gan_opt"]["loss_weight"] == {"1": 1e-1, "2": 1e-2}[path.stem[-1]]
        assert train["optim_g"] == {"type": "Adam", "lr": 2e-4, "weight_decay": 0, "betas": [0.5, 0.9]}
        assert train["optim_d"]["lr"] == 2e-4
        assert [m / train["total_iter"] for m in train["scheduler"]["milestones"]] == [0.125, 0.25, 0.5, 0.75]
        assert train["scheduler"]["gamma"] == 0.5
        assert opt["datasets"]["train"]["dataroot_gt"] == str(local_files / "div2k/DIV2K/DIV2K_train_HR_sub")
        assert opt["path"]["pretrain_network_g"] == str(local_files / "psnr.pth")
    else:
        assert opt["model_type"] == "RealESRGANModel" and type(net).__name__ == "UNetDiscriminatorSAN"
        assert list(net.san.layers) == [f"conv{i}" for i in range(1, 9)]
        assert opt["datasets"]["train"]["meta_info"].startswith(str(local_files / "df2k"))
        assert opt["path"]["pretrain_network_g"] == str(local_files / "realesrnet.pth")


def _run_main(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["-opt", str(path)]) == 2
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("unset", "missing", "line"),
    [
        ("SAN_VGG19_PATH", None, "path.vgg19: '${SAN_VGG19_PATH}' needs the environment variable SAN_VGG19_PATH, "
         "which is not set"),
        (None, ("SAN_ESRGAN_PSNR_CHECKPOINT", "nope.pth"),
         "path.pretrain_network_g: file not found: {tmp}/nope.pth (from $SAN_ESRGAN_PSNR_CHECKPOINT)"),
        (None, ("SAN_DIV2K_ROOT", "no_div2k"),
         "datasets.train.dataroot_gt: file or folder not found: {tmp}/no_div2k/DIV2K/DIV2K_train_HR_sub "
         "(from $SAN_DIV2K_ROOT)"),
    ],
)  # fmt: skip
def test_missing_local_file_stops_with_one_line(
    unset: Any, missing: Any, line: str, local_files: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    if unset:
        monkeypatch.delenv(unset)
    if missing:
        monkeypatch.setenv(missing[0], str(local_files / missing[1]))
    assert _run_main(ESRGAN[0], capsys) == [f"san_basicsr: error: {line.replace('{tmp}', str(local_files))}"]
    assert not (local_files / "experiments").exists()  # stopped before BasicSR made its folders


def test_perceptual_loss_without_local_vgg_stops(local_files: Path, capsys: Any) -> None:
    opt = yaml.safe_load(ESRGAN[0].read_text())
    del opt["path"]["vgg19"]
    lines = _run_main(fx.write_yaml(local_files / "no_vgg.yml", opt), capsys)
    assert lines == [
        "san_basicsr: error: train.perceptual_opt: VGG19 weights not found (BasicSR would download them); set "
        "path.vgg19 to a local https://download.pytorch.org/models/vgg19-dcbb9e9d.pth (the shipped options: "
        "$SAN_VGG19_PATH)"
    ]


def test_san_block_on_a_non_san_arch_is_refused(local_files: Path, capsys: Any) -> None:
    opt = yaml.safe_load(REAL_ESRGAN.read_text())
    opt["network_d"]["type"] = "UNetDiscriminatorSN"
    lines = _run_main(fx.write_yaml(local_files / "sn.yml", opt), capsys)
    assert lines == [
        "san_basicsr: error: network_d.san: UNetDiscriminatorSN is not a SAN arch; use one of UNetDiscriminatorSAN, "
        "VGGStyleDiscriminatorSAN, SRCriticSAN (same arguments plus san:)"
    ]


def test_cli_bad_san_option_fails_at_option_parsing(local_files: Path) -> None:
    opt = yaml.safe_load(ESRGAN[0].read_text())
    opt["network_d"]["san"]["filter_ratio"] = 1.5
    path = fx.write_yaml(local_files / "bad.yml", opt)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "adapters"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "san_basicsr", "-opt", str(path)], cwd=local_files, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "Warning" not in line and not line.startswith(" ")]
    assert errors == ["san_basicsr: error: network_d.san: expected filter_ratio in (0, 1], got 1.5"]
    assert not (local_files / "experiments").exists()
