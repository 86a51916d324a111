"""A run's identity (``RunSpec.config`` → ``config_hash``) decides whether a finished run under ``--out`` is
reused or refused. The committed runs (the diagnoses and the README's reference run) must stay reusable by a report
rebuild at HEAD, and options that only choose how a step is launched (``cuda_graph``) must not enter the identity."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gan.checkpoint import config_hash, read_json
from benchmarks.gan.setups import get_setup
from benchmarks.gan.train import RUNTIME_ONLY, RunSpec
from benchmarks.gan.treatments import Treatment, parse_treatment

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
FOLDERS = (
    "diagnosis_cpu",
    "diagnosis_cpu_800",
    "diagnosis_cpu_2000",
    "diagnosis_cpu_6400",
    "diagnosis_cpu_sn5d_2400",
    "side_by_side_cpu-quick",
    "side_by_side_gains_cpu",
)
# committed packed (benchmarks.gan.checkpoint.pack / read_json), named by their result.json
COMMITTED = sorted(p.with_suffix("") for d in FOLDERS for p in (RESULTS / d).rglob("result.json.xz"))


def _spec_of(config: dict[str, Any]) -> RunSpec:
    """The spec this code builds for a committed run's parameters (as the side-by-side CLI would)."""
    setup, treatment = config["setup"], config["treatment"]
    name = re.sub(r"-\d+d$", "", treatment["key"])
    keys = ("seed", "steps", "batch", "eval_every", "n_eval", "eval_batch", "ckpt_every", "log_every", "is_splits")
    treat = parse_treatment(f"{name}:{treatment['n_dis']}")
    return RunSpec(get_setup(setup["key"], setup["g_ch"], setup["d_ch"]), treat, *(config[k] for k in keys))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_committed_runs_keep_their_identity(path: Path) -> None:
    result = read_json(path)
    config = result["config"]
    rebuilt = _spec_of(config).config(config["metric"], config["data"])
    assert config_hash(rebuilt) == result["config_hash"], (
        "this change alters the identity of committed runs (a rebuild under --out would refuse them): "
        f"{sorted(set(rebuilt['treatment']) ^ set(config['treatment']))}"
    )


def test_launch_only_options_are_not_part_of_the_identity() -> None:
    assert len(COMMITTED) == 82, (
        f"expected the 82 committed runs (60 diagnosis, 13 reference, 9 gains), found {len(COMMITTED)}"
    )
    assert set(RUNTIME_ONLY) <= {f.name for f in dataclasses.fields(Treatment)}
    spec = _spec_of(read_json(COMMITTED[0])["config"])
    graph = dataclasses.replace(spec, treatment=dataclasses.replace(spec.treatment, cuda_graph=True))
    assert graph.config("m", "d") == spec.config("m", "d")
    assert not set(RUNTIME_ONLY) & set(spec.config("m", "d")["treatment"])
    other = dataclasses.replace(spec, treatment=dataclasses.replace(spec.treatment, interval=7))
    assert config_hash(other.config("m", "d")) != config_hash(spec.config("m", "d"))
