"""Shared by the ``SAN``/``apply_san`` tests: tiny critics, data, reference constants and model fingerprints.

``Critic``: two convs (one strided), BatchNorm, a Linear head and a class Embedding. ``SNCritic``: the
same kinds with torch spectral norm (hook- and parametrization-style) and non-circular padding, what
``apply_san`` must strip and switch. ``fingerprint``/``assert_same``: everything an exact inverse (or a
rejected call) must leave as it was.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from san_core import SAN, conv_constant, linear_constant


class Critic(nn.Module):
    """A tiny projection critic: two convs (one strided), BatchNorm, a Linear head and a class Embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 4, stride=2, padding=1)
        self.head = nn.Linear(8, 1)
        self.embed = nn.Embedding(4, 8)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.leaky_relu(self.bn(self.conv1(x)), 0.2)
        h = F.leaky_relu(self.conv2(h), 0.2).mean((2, 3))
        return self.head(h) + (self.embed(y) * h).sum(1, keepdim=True)


def critic(seed: int = 0) -> Critic:
    torch.manual_seed(seed)
    return Critic()


def batch(h: int = 8, w: int = 8, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, h, w, generator=g), torch.randint(0, 4, (4,), generator=g)


def constants_of(model: Critic, size: tuple[int, int]) -> dict[str, Tensor]:
    """Reference constants straight from the functional core (``‖W‖₀,∞`` for convs, ``σ₁`` otherwise)."""
    return {
        "conv1": conv_constant(model.conv1.weight, size),
        "conv2": conv_constant(model.conv2.weight, size, stride=2),
        "head": linear_constant(model.head.weight),
        "embed": linear_constant(model.embed.weight),
    }


def train_step(model: Critic, seed: int) -> None:
    """One backward pass (gradients accumulate; no optimizer step)."""
    model(*batch(seed=seed)).square().mean().backward()


def count_normalizations(san: SAN) -> list[int]:
    """Wrap ``san.normalize_`` (the attach hook looks it up per step) to record every normalization."""
    done: list[int] = []
    inner = san.normalize_

    def counting(**kwargs: Any) -> dict[str, Tensor]:
        out = inner(**kwargs)
        if out:
            done.append(san.calls)
        return out

    san.normalize_ = counting  # type: ignore[method-assign]
    return done


def san_progress(san: SAN) -> dict[str, Any]:
    """What a normalization advances: the call counter, the subset RNG, the power vectors, the last constants."""
    return {
        "calls": san.calls,
        "generator": san.generator.get_state().clone(),
        "power_vectors": {n: u.clone() for n, u in san.power_vectors.items()},
        "last_constants": {n: c.clone() for n, c in san.last_constants.items()},
        "pending": set(san._pending),
    }


def assert_same_progress(san: SAN, before: dict[str, Any]) -> None:
    after = san_progress(san)
    assert after["calls"] == before["calls"]
    assert torch.equal(after["generator"], before["generator"]), "the subset generator advanced"
    assert list(after["power_vectors"]) == list(before["power_vectors"])
    for name, u in before["power_vectors"].items():
        assert torch.equal(after["power_vectors"][name], u), f"power vector of {name!r} changed"
    assert list(after["last_constants"]) == list(before["last_constants"])
    for name, c in before["last_constants"].items():
        assert torch.equal(after["last_constants"][name], c), name
    assert after["pending"] == before["pending"]


class SNCritic(nn.Module):
    """Hook-style SN conv, parametrization-style SN linear, zero/reflect-padded convs, a plain embedding."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.utils.spectral_norm(nn.Conv2d(3, 8, 3, padding=1))
        self.conv2 = nn.Conv2d(8, 8, 4, stride=2, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
        self.head = nn.utils.parametrizations.spectral_norm(nn.Linear(8, 1))
        self.embed = nn.Embedding(4, 8)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)
        h = F.leaky_relu(self.conv3(h), 0.2).mean((2, 3))
        return self.head(h) + (self.embed(y) * h).sum(1, keepdim=True)


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything an exact inverse must give back: values, Parameter ids, classes, padding, hooks, attributes."""
    return {
        "state": {k: v if nn.parameter.is_lazy(v) else v.detach().clone() for k, v in model.state_dict().items()},
        "ids": {n: id(p) for n, p in model.named_parameters()},
        "classes": {n: type(m) for n, m in model.named_modules()},
        "padding": {n: m.padding_mode for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)},
        "hooks": {
            n: [list(getattr(m, k)) for k in ("_forward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks")]
            for n, m in model.named_modules()
        },
        "attributes": {n: sorted(m.__dict__) for n, m in model.named_modules()},
    }


def assert_same(model: nn.Module, before: dict[str, Any]) -> None:
    after = fingerprint(model)
    assert list(after["state"]) == list(before["state"])
    for key, value in before["state"].items():
        if nn.parameter.is_lazy(value):
            assert after["state"][key] is value, key
        else:
            torch.testing.assert_close(after["state"][key], value, rtol=0, atol=0, equal_nan=True, msg=key)
    for part in ("ids", "classes", "padding", "hooks", "attributes"):
        assert after[part] == before[part], part


def before_param(before: dict[str, Any], model: nn.Module, name: str) -> nn.Parameter:
    """The Parameter that had ``name`` when ``before`` was taken (looked up by id among today's parameters)."""
    wanted = before["ids"][name]
    return next(p for p in model.parameters() if id(p) == wanted)
