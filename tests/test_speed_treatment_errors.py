"""The speed side by side keeps timing the other treatments when one fails (set-up, warm-up or a timed step),
records why, and the GPU report shows it; ``san-graph`` (SAN's CUDA-graph step) is timed on CUDA only."""

from __future__ import annotations

import pytest
import torch

from benchmarks import speed_side_by_side as sbs
from benchmarks.gpu import report, speed

CPU = torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA san-graph sets up without error")
def test_a_treatment_failing_at_set_up_is_recorded_and_the_others_timed() -> None:
    errors: dict[str, str] = {}
    res = sbs.bench_critic("sngan_cnn", CPU, 2, 2, ["none", "san-graph", "sn"], profile_memory=False, errors=errors)
    assert sorted(res) == ["none", "sn"] and all(res[k]["samples"] == 2 for k in res)
    assert list(errors) == ["san-graph"]
    assert errors["san-graph"].startswith("ValueError: SAN: cuda_graph=True needs CUDA")
    with pytest.raises(ValueError, match="cuda_graph=True needs CUDA"):  # without ``errors`` it propagates
        sbs.bench_critic("sngan_cnn", CPU, 2, 1, ["none", "san-graph"], profile_memory=False)


def test_a_treatment_failing_in_a_timed_round_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    original = sbs.Bench.sample

    def sample(self: sbs.Bench, device: torch.device) -> None:
        if self.treatment.key == "sn" and len(self.times) == 2:
            raise RuntimeError("replay failed\nsecond line")
        original(self, device)

    monkeypatch.setattr(sbs.Bench, "sample", sample)
    errors: dict[str, str] = {}
    res = sbs.bench_critic("sngan_cnn", CPU, 2, 4, ["none", "sn", "san"], profile_memory=False, errors=errors)
    assert sorted(res) == ["none", "san"] and res["san"]["samples"] == 4
    assert errors == {"sn": "RuntimeError: replay failed"}


def test_san_graph_is_timed_on_cuda_only() -> None:
    assert "san-graph" not in speed.treatments(CPU)
    assert speed.treatments(torch.device("cuda"))[-1] == "san-graph"
    assert set(speed.treatments(CPU)) < set(speed.treatments(torch.device("cuda")))


def test_report_marks_a_failed_treatment_and_says_why(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = ["none", "san", "san-graph"]
    timed = {k: {"ms": 2.0 * (i + 1), "x_none": float(i + 1)} for i, k in enumerate(keys[:2])}
    section = {"treatments": keys, "timer": "CUDA events", "critics": {
        "sngan_cnn": {"status": "ok", "batch": 64, "treatments": timed, "errors": {"san-graph": "RuntimeError: x"}},
    }}  # fmt: skip
    text = "\n".join(report._speed(section, tmp_path))
    assert "| sngan_cnn | 64 | 2.00 ms (1.00×) | 4.00 ms (2.00×) | failed |" in text
    assert "- sngan_cnn / san-graph: RuntimeError: x" in text
    assert (tmp_path / "speed.png").stat().st_size > 0
