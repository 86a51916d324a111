"""Side-by-side benchmark: metrics, data sources, feature networks, treatments, resumable runs, both CLIs."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import san_core
from benchmarks import _critics, side_by_side, speed_side_by_side
from benchmarks.gan import metrics
from benchmarks.gan.classifier import CifarResNet, accuracy, load_classifier
from benchmarks.gan.critics_extra import PatchCritic, VGGCritic
from benchmarks.gan.data import CLASSES, DataMissing, Sampler, load_cifar10
from benchmarks.gan.feature_nets import make_feature_net
from benchmarks.gan.models_cnn import CNNCritic
from benchmarks.gan.models_resnet import ResNetCritic
from benchmarks.gan.setups import get_setup
from benchmarks.gan.train import RunSpec, train_run
from benchmarks.gan.treatments import apply_treatment, parse_treatment

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLASSIFIERS = SHARED / "cifar10_classifiers"
EXACT = SHARED / "cifar10" / "cifar10_exact_subset.npz"


# ------------------------------------------------------------------------------------------- metrics
def test_frechet_distance_closed_form_and_both_sqrtm_paths():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    assert metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    via_eigh = metrics._sqrtm_trace_eigh(s1, s2)
    assert metrics.sqrtm_trace(s1, s2) == pytest.approx(via_eigh, rel=1e-8)
    assert metrics.frechet_distance(mu1[:0], np.zeros((0, 0)), mu1[:0], np.zeros((0, 0))) == 0
    with pytest.raises(ValueError, match="matching shapes"):
        metrics.frechet_distance(mu1, s1, mu2[:3], s2)


def test_inception_score_extremes():
    confident = torch.full((40, 10), -1e4)
    confident[torch.arange(40), torch.arange(40) % 10] = 0
    assert metrics.inception_score(confident)[0] == pytest.approx(10.0, rel=1e-6)
    assert metrics.inception_score(torch.zeros(40, 10))[0] == pytest.approx(1.0)
    mean, std = metrics.inception_score(confident, splits=4)
    assert mean == pytest.approx(10.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------- classifier
def test_classifier_loads_akamaster_format_strictly(tmp_path):
    torch.manual_seed(0)
    model = CifarResNet(3)
    path = tmp_path / "resnet20-test.th"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "best_prec1": 0.0}, path)
    loaded = load_classifier(path)
    x = torch.rand(3, 3, 32, 32)
    feats, logits = loaded.features(x)
    assert feats.shape == (3, 64) and logits.shape == (3, 10)
    torch.testing.assert_close(logits, model.eval()(x))
    state = {"module." + k: v for k, v in model.state_dict().items() if not k.endswith("linear.bias")}
    torch.save({"state_dict": state}, tmp_path / "resnet20-bad.th")
    with pytest.raises(RuntimeError, match=r"linear\.bias"):
        load_classifier(tmp_path / "resnet20-bad.th")
    with pytest.raises(ValueError, match="expected arch"):
        load_classifier(tmp_path / "resnet20-test.th", arch="resnet18")


@pytest.mark.skipif(not (CLASSIFIERS / "resnet20-12fca82f.th").is_file() or not EXACT.is_file(),
                    reason="shared data (cifar10_classifiers, cifar10_exact_subset.npz) not present")  # fmt: skip
def test_trained_classifier_accuracy_on_exact_test_images():
    model = load_classifier(CLASSIFIERS / "resnet20-12fca82f.th")
    with np.load(EXACT) as f:
        acc = accuracy(model, torch.from_numpy(f["x_test"]), torch.from_numpy(f["y_test"]).long())
    assert 0.90 <= acc <= 0.94  # the checkpoint reports 91.78 % on the full test set
    net = make_feature_net("classifier")
    assert net.fid_name == "classifier-FID (resnet20)" and net.is_name == "classifier-IS (resnet20)"


def test_inception_path_needs_weights_and_loads_pytorch_fid_format(tmp_path):
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision not installed (the Inception path needs it)")
    from benchmarks.gan.inception import FIDInception, InceptionMissing, load_inception

    with pytest.raises(InceptionMissing, match="--inception-weights"):
        load_inception(None)
    with pytest.raises(InceptionMissing, match="no file"):
        load_inception(tmp_path / "missing.pth")
    torch.manual_seed(0)
    state = {k: v for k, v in FIDInception().net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "pt_inception.pth")
    net = load_inception(tmp_path / "pt_inception.pth")
    feats, logits = net.features(torch.rand(1, 3, 32, 32))
    assert feats.shape == (1, 2048) and logits.shape == (1, 1008)
    # The FID variant's last block max-pools where torchvision's average-pools: outputs must differ.
    h = torch.rand(1, 2048, 8, 8)
    block = net.net.Mixed_7c
    assert not torch.allclose(block(h), type(block).forward(block, h))
    torch.save({**state, "fc.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a pytorch-fid Inception"):
        load_inception(tmp_path / "other.pth")


# ---------------------------------------------------------------------------------------------- data
def _jpeg(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_data_sources_tarball_pickles_and_missing(tmp_path):
    tar_path = tmp_path / "mini.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for label, name in enumerate(CLASSES):
            for i in range(2):
                data = _jpeg(20 * label + i)
                info = tarfile.TarInfo(f"train/{name}/{i:04d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    ds = load_cifar10(tar_path, cache=tmp_path / "cache")
    assert ds.x.shape == (20, 3, 32, 32) and ds.x.dtype == torch.uint8
    assert ds.y.tolist() == [c for c in range(10) for _ in range(2)]
    assert abs(int(ds.x[5].float().mean()) - 41) <= 2  # class 2, image 1: value 41, JPEG-rounded
    assert len(list((tmp_path / "cache").glob("*/train_x.npy"))) == 1
    assert torch.equal(load_cifar10(tar_path, cache=tmp_path / "cache").x, ds.x)  # from the .npy cache

    root = tmp_path / "tv" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = np.arange(3 * 3072, dtype=np.int64).reshape(3, 3072) % 256
        with open(root / name, "wb") as f:
            pickle.dump({"data": rows.astype(np.uint8), "labels": [1, 2, 3]}, f)
    tv = load_cifar10(tmp_path / "tv", cache=tmp_path / "cache")
    assert tv.x.shape == (15, 3, 32, 32) and tv.y.tolist() == [1, 2, 3] * 5
    assert tv.x[0, 0, 0, :3].tolist() == [0, 1, 2]  # CHW row-major, as in the pickles

    with pytest.raises(DataMissing, match="--data"):
        load_cifar10(tmp_path / "nowhere", cache=tmp_path / "cache")
    assert side_by_side.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2


def test_sampler_is_seeded_and_resumable():
    a, b = Sampler(10, 4, seed=3), Sampler(10, 4, seed=3)
    first = [a.next() for _ in range(2)]
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(x, y) for x, y in zip([a.next() for _ in range(3)], [b.next() for _ in range(3)]))
    assert torch.equal(first[0], Sampler(10, 4, seed=3).next())


# -------------------------------------------------------------------------------------- treatments
def test_critics_match_the_constants_benchmark_layer_shapes():
    for name, model in [("sngan_cnn", CNNCritic()), ("resnet", ResNetCritic()), ("esrgan", VGGCritic()),
                        ("spade", PatchCritic())]:  # fmt: skip
        shapes = sorted(tuple(m.weight.shape) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        ref = sorted((L.out_ch, L.in_ch, L.k, L.k) if L.kind == "conv" else (L.out_ch, L.in_ch)
                     for L in _critics.CRITICS[name]())  # fmt: skip
        assert shapes == ref, name


def test_treatment_parsing_and_application():
    t = parse_treatment("sn:5")
    assert (t.key, t.kind, t.n_dis) == ("sn-5d", "sn", 5)
    assert parse_treatment("san-every100").interval == 100 and parse_treatment("san-r25").filter_ratio == 0.25
    assert parse_treatment("san-reparam").form == "reparametrize" and parse_treatment("san").form == "rescale"
    with pytest.raises(ValueError, match="expected one of"):
        parse_treatment("bn")
    with pytest.raises(ValueError, match="positive int"):
        parse_treatment("sn:0")
    x = (torch.randn(2, 3, 32, 32),)
    torch.manual_seed(0)
    sn = apply_treatment(parse_treatment("sn"), CNNCritic(ch=8), x)
    assert sum(torch.nn.utils.parametrize.is_parametrized(m) for m in sn.critic.modules()) == 8
    torch.manual_seed(0)
    critic = CNNCritic(ch=8)
    ids = [id(p) for p in critic.parameters()]
    san = apply_treatment(parse_treatment("san"), critic, x)
    assert [id(p) for p in critic.parameters()] == ids
    assert all(c.padding_mode == "circular" for c in critic.convs)
    # Normalized before first use: every conv's ‖W‖₀,∞ on its input size (and the dense σ₁) is 1.
    constants = san.effective_constants()
    assert len(constants) == 8 and all(v == pytest.approx(1.0, rel=1e-4) for v in constants.values())
    assert constants["convs.6"] == pytest.approx(
        float(san_core.conv_constant(critic.convs[6].weight, (4, 4), stride=1)), rel=1e-6
    )
    # The authors' form: the raw weights stay, the forward divides by s; the effective weights are normalized.
    torch.manual_seed(0)
    critic = CNNCritic(ch=8)
    raw = {k: v.detach().clone() for k, v in critic.named_parameters()}
    rep = apply_treatment(parse_treatment("san-reparam"), critic, x)
    after = {k.replace("parametrizations.weight.original", "weight"): v for k, v in critic.named_parameters()}
    assert after.keys() == raw.keys() and all(torch.equal(raw[k], after[k].detach()) for k in raw)
    assert all(v == pytest.approx(1.0, rel=1e-4) for v in rep.effective_constants().values())


def test_sparsity_gains_treatment_sets_measured_gains_and_rescales():
    t = parse_treatment("san-gains:2")
    assert (t.key, t.kind, t.n_dis, t.sparsity_gains) == ("san-gains-2d", "san", 2, True)
    torch.manual_seed(0)
    critic = CNNCritic(ch=8)
    applied = apply_treatment(parse_treatment("san-gains"), critic, (torch.zeros(2, 3, 32, 32),))
    images = (torch.rand(16, 3, 32, 32) * 2 - 1,)
    assert applied.san is not None
    applied.san.normalize_(force=True)  # what the first forward would do; then the measurement changes nothing
    expected = san_core.inspect_critic(critic, [images], gains=True).gains
    measured = applied.refresh_gains(images)
    assert measured is not None
    assert measured["gains"] == pytest.approx(expected) and applied.san.config["layer_gains"] == measured["gains"]
    assert any(g > 1 for g in measured["gains"].values())  # LeakyReLU features: ρ differs between layers
    for name, value in applied.effective_constants().items():  # rescaled at once: ‖W‖₀,∞ = 1/g_l
        assert value == pytest.approx(1 / measured["gains"].get(name, 1.0), rel=1e-4), name
    assert applied.state_dict()["config"]["layer_gains"] == measured["gains"]
    assert (
        apply_treatment(parse_treatment("san"), CNNCritic(ch=8), (torch.zeros(2, 3, 32, 32),)).refresh_gains(images)
        is None
    )


# ------------------------------------------------------------------------------------------ training
def _spec(treatment: str, steps: int = 3, eval_every: int = 2) -> RunSpec:
    return RunSpec(get_setup("cnn", 16, 8), parse_treatment(treatment), seed=0, steps=steps, batch=4,
                   eval_every=eval_every, n_eval=16, eval_batch=16, ckpt_every=100, log_every=1)  # fmt: skip


@pytest.mark.parametrize("treatment", ["san", "sn:2", "gp", "san-gains", "san-scaled"])
def test_killed_run_resumes_bit_for_bit(tmp_path, treatment):
    data, net, dev = load_cifar10("fake:32"), make_feature_net("random"), torch.device("cpu")
    ref = metrics.reference_stats(net, data.x, data.name, 32, tmp_path / "cache", dev)
    straight = train_run(_spec(treatment), tmp_path / "a", data, net, ref, dev, keep_models=True)
    partial = train_run(_spec(treatment), tmp_path / "b", data, net, ref, dev, max_steps=1)
    assert not partial["finished"] and any((tmp_path / "b" / "runs").rglob("checkpoint.pt"))
    resumed = train_run(_spec(treatment), tmp_path / "b", data, net, ref, dev, keep_models=True)
    assert resumed["finished"] and resumed["steps_done"] == 3
    assert resumed["history"]["eval"] == straight["history"]["eval"]
    assert resumed["history"]["loss"] == straight["history"]["loss"]
    run = _spec(treatment).run_dir(tmp_path / "a")
    wa = torch.load(run / "final_models.pt")
    wb = torch.load(_spec(treatment).run_dir(tmp_path / "b") / "final_models.pt")
    assert all(torch.equal(wa[m][k], wb[m][k]) for m in ("G", "D") for k in wa[m])
    assert not (run / "checkpoint.pt").exists()
    assert train_run(_spec(treatment), tmp_path / "a", data, net, ref, dev)["skipped"]
    with pytest.raises(RuntimeError, match="another config"):
        train_run(_spec(treatment, steps=4), tmp_path / "a", data, net, ref, dev)


def test_side_by_side_cli_test_preset(tmp_path):
    out = tmp_path / "out"
    args = ["--preset", "test", "--data", "fake:64", "--metric", "random", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--threads", "1"]  # fmt: skip
    assert side_by_side.main(args) == 0
    result = json.loads((out / "side_by_side.json").read_text())
    rows = result["rows"]
    assert [(r["setup"], r["treatment"]) for r in rows][:8] == [
        ("cnn", k) for k in ["none", "sn", "gp", "san", "san-every100", "san-r25", "san-gains", "sn-2d"]
    ]
    assert {r["setup"] for r in rows} == {"cnn", "resnet", "biggan"} and all(r["finished"] for r in rows)
    assert all(np.isfinite(r["final_fid"][0]) and r["final_is"][0] >= 1 for r in rows)
    md = (out / "side_by_side.md").read_text()
    assert "#### SNGAN standard CNN (G 32 ch, D 8 ch): SAN + sparsity gains (experimental), seed 0" in md
    assert md.count("g_l = — : no gain") == 1  # once, under the one gains table
    assert md.index("### Per-layer sparsity gains") < md.index("g_l = — : no gain")
    gains_run = next(r for r in result["runs"] if r["treatment"] == "san-gains")
    assert [m["step"] for m in gains_run["layer_gains"]] == [0, 2]
    assert set(gains_run["layer_gains"][-1]["gains"]) <= set(gains_run["layer_gains"][-1]["effective_density"])
    for header in re.findall(r"^\| treatment \| D steps .*$", md, flags=re.M):
        assert "random-feature-FID (untrained resnet20, test only) final" in header
        assert not re.search(r"\| FID", header)
    for setup in ("cnn", "resnet", "biggan"):
        assert (out / f"scores_{setup}.png").stat().st_size > 10_000
        assert (out / f"san_constants_{setup}.png").stat().st_size > 10_000
    assert (out / "weight_constants_cnn.png").is_file() and not (out / "weight_constants_resnet.png").exists()
    # collapse diagnostics at every evaluation, in the JSON and the report
    for run in result["runs"]:
        for e in run["evals"]:
            assert 0 < e["top_class"] <= 1 and e["pixel_std"] >= 0 and e["d_real"] >= 0 and e["d_fake"] >= 0
            assert isinstance(e["collapsed"], bool)
        assert run["evals"][-1]["d_loss"] is not None and run["evals"][0]["d_loss"] is None  # step 0: no loss yet
    assert "Collapse diagnostics at the last evaluation" in md and md.index("## What this run shows") < md.index(
        "## Results"
    )
    assert all(r["seeds"] == [0] for r in rows) and "| 2/2 | 1 |" in md  # the seeds column is a count
    assert side_by_side.main(args) == 0  # everything finished: all runs skipped, same table
    assert json.loads((out / "side_by_side.json").read_text())["rows"] == rows


def test_speed_side_by_side_cli(tmp_path):
    stem = tmp_path / "speed"
    args = ["--critics", "sngan_cnn", "--rounds", "2", "--batch", "2", "--treatments", "sn,gp,san,san-every100",
            "--threads", "1", "--out", str(stem)]  # fmt: skip
    assert speed_side_by_side.main(args) == 0
    res = json.loads(stem.with_suffix(".json").read_text())["results"]["sngan_cnn"]
    assert list(res["treatments"]) == ["none", "sn", "gp", "san", "san-every100"]
    assert res["treatments"]["none"]["x_none"] == 1.0
    assert res["treatments"]["san-every100"]["rescale_ms"] > 0
    v = res["verdicts"]
    assert v["san_over_sn"] == pytest.approx(res["treatments"]["san"]["ms"] / res["treatments"]["sn"]["ms"])
    assert "SAN / GP" in stem.with_suffix(".md").read_text()
