"""Choosing target layers by name patterns, with a dry run and errors that list near matches."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

from torch import Tensor, nn
from torch.nn.utils import parametrize

from ._reparam import raw_weight

Patterns = Union[str, Sequence[str], None]
#: Layer types SAN normalizes: convs (1/2/3-D, transposed too) by Lemma 1, Linear/Embedding by σ₁.
SUPPORTED_TYPES: tuple[type, ...] = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding)


def as_patterns(patterns: Patterns, key: str) -> tuple[str, ...]:
    """Normalize ``None`` / one glob / a list of globs to a tuple (``None`` means "no pattern")."""
    if patterns is None:
        return ()
    if isinstance(patterns, str):
        return (patterns,)
    if not isinstance(patterns, (list, tuple, set, frozenset)):
        raise TypeError(
            f"{key}: expected None, a glob string or a list/tuple of glob strings, got {type(patterns).__name__} "
            f"{patterns!r}"
        )
    out = tuple(patterns)
    if not all(isinstance(p, str) and p for p in out):
        raise TypeError(f"{key}: expected a glob string or a list of glob strings, got {patterns!r}")
    return out


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class Selection:
    """Result of :func:`select_layers`: matched layer names, every other layer with the reason, and the matched
    layers that share their weight Parameter with other matched ones (``tied``: normalized once, together)."""

    matched: list[str] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    tied: dict[str, list[str]] = field(default_factory=dict)

    def report(self) -> str:
        """A dry-run listing, one layer per line."""
        shared = {n: f"  [weight shared with {', '.join(others)}]" for n, others in self.tied.items()}
        lines = [f"matched ({len(self.matched)}):"] + [f"  + {n}{shared.get(n, '')}" for n in self.matched]
        lines += [f"unmatched ({len(self.unmatched)}):"] + [f"  - {n}  [{why}]" for n, why in self.unmatched]
        return "\n".join(lines)


def select_layers(
    module: nn.Module,
    targets: Patterns = None,
    *,
    exclude: Patterns = None,
    types: tuple[type, ...] = SUPPORTED_TYPES,
    what: str = "SAN",
) -> Selection:
    """Select leaf layers of ``types`` whose qualified name matches ``targets`` and not ``exclude``.

    Patterns are shell globs on ``named_modules()`` names (``*`` also crosses dots), e.g.
    ``"blocks.*.conv1"``; ``targets=None`` selects every layer of a supported type. A name given
    *without* wildcards must exist and be of a supported type. Raises ``ValueError`` naming the
    patterns and the closest layer names when nothing matches.
    """
    if isinstance(module, types):
        raise ValueError(
            f"{what}: got a bare {type(module).__name__}; layers are chosen by name inside a container, "
            "so wrap it (e.g. nn.Sequential(layer))"
        )
    include = as_patterns(targets, "targets")
    excluded = as_patterns(exclude, "exclude")
    named = dict(module.named_modules())
    for pattern in include:
        if not any(ch in pattern for ch in "*?[") and pattern not in named:
            raise ValueError(f"{what}: no layer named {pattern!r}; {_nearby(pattern, named)}")
        if pattern in named and not isinstance(named[pattern], types):
            raise ValueError(
                f"{what}: layer {pattern!r} is {type(named[pattern]).__name__}; expected one of "
                f"{', '.join(t.__name__.lstrip('_') for t in types)}"
            )
    selection = Selection()
    for name, layer in named.items():
        if not name or not isinstance(layer, types):
            if name and not any(True for _ in layer.children()):
                selection.unmatched.append((name, f"unsupported type {type(layer).__name__}"))
            continue
        if include and not _matches(name, include):
            selection.unmatched.append((name, "not in targets"))
        elif _matches(name, excluded):
            selection.unmatched.append((name, "excluded"))
        else:
            selection.matched.append(name)
    weights: dict[int, list[str]] = {}
    for name in selection.matched:
        layer = named[name]
        weight = (
            raw_weight(layer)
            if isinstance(layer._parameters.get("weight"), Tensor) or parametrize.is_parametrized(layer, "weight")
            else None
        )
        if weight is not None:
            weights.setdefault(id(weight), []).append(name)
    selection.tied = {n: [m for m in group if m != n] for group in weights.values() if len(group) > 1 for n in group}
    if not selection.matched:
        layer_names = [n for n, m in named.items() if n and isinstance(m, types)]
        probe = include[0] if include else (excluded[0] if excluded else "")
        raise ValueError(
            f"{what}: no layer matched targets={list(include) or 'all'} exclude={list(excluded)} in "
            f"{type(module).__name__}; {_nearby(probe, layer_names)}"
        )
    return selection


def dry_run(module: nn.Module, targets: Patterns = None, *, exclude: Patterns = None) -> Selection:
    """Print and return what :func:`select_layers` would pick, without changing anything."""
    selection = select_layers(module, targets, exclude=exclude)
    print(selection.report())
    return selection


def _nearby(probe: str, names: Sequence[str] | dict) -> str:
    pool = [n for n in names if n]
    if not pool:
        return "the module has no supported layers (Conv*, ConvTranspose*, Linear, Embedding)"
    close = difflib.get_close_matches(probe.replace("*", ""), pool, n=5, cutoff=0.3) if probe else []
    shown = close or pool[:8]
    return f"{'closest' if close else 'available'} layer names: {', '.join(shown)}"


def resolve(module: nn.Module, names: Optional[Sequence[str]]) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` pairs for the given qualified names, in order."""
    named = dict(module.named_modules())
    return [(n, named[n]) for n in (names or [])]
