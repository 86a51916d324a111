"""SPADE adapter, patch logic on the stand-in D built the way SPADE builds its own (CI, no checkout needed).

Checks: the layer plan (middle convs by default), SN stripped only there, circular padding, constants
``‖W‖₀,∞ = 1`` after a real ``optimizer_D`` step (and subset-max · g = 1 for r = 0.25, g = 1.3), SN
checkpoints loading strict, G untouched, exact resume and exact undo, and one-line errors on bad input.
"""

from __future__ import annotations

import pytest
import torch
from san_spade import SanSpadeError, SanSpadeOptions, patch_discriminator, plan_layers, session_for
from standins import spade_standin as standin
from torch import nn

from san_core import conv_constant, spectral_norm_style

MIDDLE = [f"discriminator_{d}.model{k}.0.0" for d in (0, 1) for k in (1, 2, 3)]
FIRST_LAST = [f"discriminator_{d}.model{k}.0" for d in (0, 1) for k in (0, 4)]
R1 = SanSpadeOptions(filter_ratio=1.0)


def make(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return standin.Multiscale(in_channels=5, ndf=8), standin.Generator(label_nc=2)


def batch(step: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    label = torch.zeros(2, 2, size, size)
    label[:, 0, :, : size // 2] = 1
    label[:, 1, :, size // 2 :] = 1
    return label, torch.rand(2, 3, size, size, generator=g) * 2 - 1


def train(D, G, opt_G, opt_D, steps, start=0):
    for step in range(start, start + steps):
        label, image = batch(step)
        opt_G.zero_grad()
        standin.g_loss(D, G, label).backward()
        opt_G.step()
        opt_D.zero_grad()
        standin.d_loss(D, G, label, image).backward()
        opt_D.step()


def setup(options: SanSpadeOptions = R1, seed: int = 0):
    D, G = make(seed)
    session = patch_discriminator(D, options)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_D = torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.5, 0.9))
    session.attach(opt_D)
    session.start((16, 16))
    return D, G, session, opt_G, opt_D


def constant(session, name, **kw):
    layer = session.san.layers[name]
    size = session.san.input_sizes[name]
    return float(conv_constant(layer.weight, size, stride=layer.stride, dilation=layer.dilation, **kw))


def test_plan_takes_middle_convs_by_default():
    D, _ = make()
    assert plan_layers(D, SanSpadeOptions()).selected == MIDDLE
    assert plan_layers(D, SanSpadeOptions()).first_last == FIRST_LAST
    everything = plan_layers(D, SanSpadeOptions(include_first_last=True)).selected
    assert sorted(everything) == sorted(MIDDLE + FIRST_LAST)
    assert plan_layers(D, SanSpadeOptions(exclude=("discriminator_1.*",))).selected == MIDDLE[:3]


def test_patch_strips_sn_on_middle_convs_only_with_circular_padding():
    D, G = make()
    named = dict(D.named_modules())
    orig_ids = {n: id(named[n].weight_orig) for n in MIDDLE}
    session = patch_discriminator(D, SanSpadeOptions())
    for name in MIDDLE:
        layer = named[name]
        assert spectral_norm_style(layer) is None and layer.padding_mode == "circular"
        assert id(layer.weight) == orig_ids[name] and "weight_orig" not in layer._parameters
        assert isinstance(named[name[:-2] + ".1"], nn.InstanceNorm2d)
    for name in FIRST_LAST:
        assert named[name].padding_mode == "zeros" and named[name] not in session.san.layers.values()
    assert spectral_norm_style(G.head) == spectral_norm_style(G.body) == "hook"
    assert "spectral norm removed" in session.report()


def test_drop_instance_norm_and_include_first_last():
    D, _ = make()
    session = patch_discriminator(D, SanSpadeOptions(include_first_last=True, drop_instance_norm=True))
    named = dict(D.named_modules())
    assert all(isinstance(named[n[:-2] + ".1"], nn.Identity) for n in MIDDLE)
    assert all(named[n].padding_mode == "circular" for n in FIRST_LAST)
    assert list(session.san.layers) == [n for n in named if n in MIDDLE + FIRST_LAST]


def test_constants_are_one_after_a_D_step_and_G_is_untouched():
    D, G, session, opt_G, opt_D = setup()
    train(D, G, opt_G, opt_D, 1)
    g_before = [p.detach().clone() for p in G.parameters()]
    label, image = batch(7)
    opt_D.zero_grad()
    standin.d_loss(D, G, label, image).backward()
    opt_D.step()
    assert session.san.calls == 2
    for name in MIDDLE:
        assert abs(constant(session, name) - 1) < 1e-4, name
    assert all(torch.equal(a, b) for a, b in zip(g_before, G.parameters()))
    assert all(spectral_norm_style(m) == "hook" for m in (G.head, G.body))
    assert not set(map(id, G.modules())) & set(map(id, session.san.layers.values()))


def test_paper_subset_times_gain_is_one():
    D, G, session, opt_G, opt_D = setup(SanSpadeOptions())
    states = []
    opt_D.register_step_pre_hook(lambda *a: states.append(session.san.generator.get_state()))
    train(D, G, opt_G, opt_D, 2)
    gen = torch.Generator()
    gen.set_state(states[-1])
    subset = {n: constant(session, n, filter_ratio=0.25, gain=1.3, generator=gen) for n in MIDDLE}
    assert all(abs(v - 1) < 1e-4 for v in subset.values()), subset
    assert max(abs(constant(session, n) - 1) for n in MIDDLE) > 1e-3


def test_sn_checkpoint_loads_strict_into_patched_D():
    sn_D, _ = make(seed=1)
    state = sn_D.state_dict()
    assert f"{MIDDLE[0]}.weight_orig" in state
    D, _ = make(seed=2)
    session = patch_discriminator(D, SanSpadeOptions())
    D.load_state_dict(state, strict=True)
    assert session.converted_layers == MIDDLE
    for name in MIDDLE:
        assert torch.equal(session.san.layers[name].weight, state[f"{name}.weight_orig"])


def test_resume_is_exact():
    options = SanSpadeOptions(interval=2)
    D, G, session, opt_G, opt_D = setup(options)
    train(D, G, opt_G, opt_D, 5)
    D2, G2, session2, opt_G2, opt_D2 = setup(options)
    train(D2, G2, opt_G2, opt_D2, 3)
    saved = ([m.state_dict() for m in (D2, G2, opt_G2, opt_D2)], session2.state_dict())
    D3, G3 = make(seed=9)
    session3 = patch_discriminator(D3, options)
    opt_G3 = torch.optim.Adam(G3.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_D3 = torch.optim.Adam(D3.parameters(), lr=4e-4, betas=(0.5, 0.9))
    for module, state in zip((D3, G3, opt_G3, opt_D3), saved[0]):
        module.load_state_dict(state)
    session3.load_state_dict(saved[1])
    session3.attach(opt_D3)
    assert "resumed" in session3.start((16, 16))
    train(D3, G3, opt_G3, opt_D3, 2, start=3)
    assert session3.san.calls == session.san.calls == 5
    for a, b in zip(D.state_dict().values(), D3.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_other_settings():
    *_, session, _, _ = setup(SanSpadeOptions())
    D, _ = make()
    other = patch_discriminator(D, R1)
    with pytest.raises(SanSpadeError, match=r"filter_ratio: checkpoint 0\.25 vs now 1\.0"):
        other.load_state_dict(session.state_dict())


def test_remove_restores_D_exactly():
    D, _ = make()
    D.eval()  # spectral norm's power iteration then leaves u/v as they are
    x = torch.randn(1, 5, 16, 16)
    before_out = [f.detach() for feats in D(x) for f in feats]
    before = {k: v.clone() for k, v in D.state_dict().items()}
    ids = {n: id(p) for n, p in D.named_parameters()}
    modules = {n: type(m) for n, m in D.named_modules()}
    session = patch_discriminator(D, SanSpadeOptions(include_first_last=True, drop_instance_norm=True))
    session.remove()
    assert {n: id(p) for n, p in D.named_parameters()} == ids
    assert {n: type(m) for n, m in D.named_modules()} == modules
    assert all(m.padding_mode == "zeros" for m in D.modules() if isinstance(m, nn.Conv2d))
    after = D.state_dict()
    assert list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.allclose(a, b) for a, b in zip(before_out, [f for feats in D(x) for f in feats]))
    assert session_for(D) is None


def _unchanged(D: nn.Module, before: dict) -> bool:
    after = D.state_dict()
    return list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("build", "options", "message"),
    [
        (lambda: standin.Multiscale(n_layers=1), SanSpadeOptions(), "nothing to patch: no middle convs"),
        (lambda: standin.Multiscale(), SanSpadeOptions(exclude=("*",)), "nothing to patch: excluded by"),
        (lambda: nn.Sequential(nn.Linear(3, 3)), SanSpadeOptions(), "has no Conv2d layer"),
    ],
)
def test_nothing_to_patch_is_one_clear_error(build, options, message):
    D = build()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    with pytest.raises(SanSpadeError, match=message) as info:
        patch_discriminator(D, options)
    assert "\n" not in str(info.value) and _unchanged(D, before) and session_for(D) is None


def test_failed_patch_leaves_D_untouched():
    D, _ = make()
    with torch.no_grad():
        dict(D.named_modules())[MIDDLE[4]].weight_orig[0, 0, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in D.state_dict().items()}
    with pytest.raises(SanSpadeError, match="NaN/Inf weights"):
        patch_discriminator(D, SanSpadeOptions())
    assert all(spectral_norm_style(dict(D.named_modules())[n]) == "hook" for n in MIDDLE)
    assert all(m.padding_mode == "zeros" for m in D.modules() if isinstance(m, nn.Conv2d))
    assert list(D.state_dict()) == list(before)


def test_other_bad_input():
    D, G = make()
    patch_discriminator(D, SanSpadeOptions())
    with pytest.raises(SanSpadeError, match="already patched"):
        patch_discriminator(D, SanSpadeOptions())
    with pytest.raises(SanSpadeError, match="holds no D parameter"):
        session_for(D).attach(torch.optim.Adam(G.parameters()))
    with pytest.raises(SanSpadeError, match=r"expected the discriminator to be a torch\.nn\.Module, got str"):
        patch_discriminator("netD")  # type: ignore[arg-type]
    with pytest.raises(SanSpadeError, match=r"--san-filter-ratio in \(0, 1\], got 1.5"):
        SanSpadeOptions(filter_ratio=1.5)


@pytest.mark.parametrize("options", [R1, SanSpadeOptions()], ids=["r=1", "r=0.25"])
def test_peek_constants_take_the_max_over_every_size_a_conv_saw(options):
    from standins.fft_reference import one_sparse_gain

    D, _ = make(seed=4)
    session = patch_discriminator(D, options)
    session.probe((16, 16))
    with pytest.warns(UserWarning, match="now sees"):
        session.probe((8, 8))  # the latest size of every conv is now the smaller one
    rng_state = session.san.generator.get_state()
    peeked = session.peek_constants()
    assert torch.equal(session.san.generator.get_state(), rng_state)  # a peek draws nothing for good
    below_max = []
    for name in MIDDLE:
        layer, sizes = session.san.layers[name], session.san.sizes_of(name)
        assert session.san.input_sizes[name] == min(sizes), name  # two sizes, or one seen at both scales
        by_size = {size: one_sparse_gain(layer, size) for size in sizes}  # float64 FFT, every kernel
        if options.filter_ratio == 1:
            assert float(peeked[name]) == pytest.approx(max(by_size.values()), rel=1e-5), name
        if by_size[session.san.input_sizes[name]] < max(by_size.values()) * (1 - 1e-4):
            below_max.append(name)
    assert below_max  # the latest size alone would give a smaller constant for these layers
    normalized = session.san.normalize_(force=True)  # what SAN divides by: the same, subsets included
    assert all(torch.equal(peeked[name], normalized[name]) for name in MIDDLE)
