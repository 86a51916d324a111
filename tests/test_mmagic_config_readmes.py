"""Every config folder (MMagic and StudioGAN) has an OpenMMLab-style README naming each of its configs."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FOLDERS = sorted({p.parent for p in [*CONFIGS.glob("mmagic/*/*.py"), *CONFIGS.glob("studiogan/*/*.yaml")]})
SECTIONS = ("## Abstract", "## What these configs do", "| baseline it modifies |", "## Results", "## Citation")


def test_folders_found() -> None:
    expected = {f"mmagic/{f}" for f in ("sngan", "sngan_proj", "biggan", "esrgan", "srgan_resnet")}
    assert {f.relative_to(CONFIGS).as_posix() for f in FOLDERS} >= expected | {"studiogan/CIFAR10"}
    assert not list(CONFIGS.glob("mmagic/sngan_proj/*standard-cnn*"))  # unconditional CNN configs live in sngan/


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.relative_to(CONFIGS).as_posix())
def test_config_folder_readme(folder: Path) -> None:
    readme = folder / "README.md"
    assert readme.is_file(), f"{folder} has configs but no README.md"
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# ") and "Sparsity Aware Normalization for GANs" in text
    for section in SECTIONS:
        assert section in text, f"{readme}: missing {section!r}"
    assert "```bibtex\n@inproceedings{kligvasser2021sparsity," in text and text.count("@inproceedings{") >= 2
    for config in [*folder.glob("*.py"), *folder.glob("*.yaml")]:
        assert config.name in text, f"{readme} does not name {config.name}"
    results = text.split("## Results", 1)[1].split("## Citation", 1)[0]
    rows = [line for line in results.splitlines() if line.startswith("| ") and not line.startswith("| config")]
    assert rows and all("not yet measured" in row for row in rows)  # until measured runs are recorded here
