"""``SAN.state_dict`` / ``SAN.load_state_dict``: everything a bit-for-bit resume needs besides the model's weights.

Loading is all or nothing: the whole state is validated first (required keys, the configuration with the
constructor's checks, the generator state, power vectors, input sizes, scales), then applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ._reparam import raw_weight
from ._validate import check_config, check_form, check_layer_gains, check_size

#: Run-time choices that a state does not carry over (they depend on where the run happens): not saved, and left as
#: the loading SAN has them (a state that has them, or an older one without them, loads the same).
RUNTIME_KEYS = ("sync_free", "compile_step", "cuda_graph")
#: Keys every state has (``pending``, ``scales`` and ``seen_sizes`` are optional: older states lack them).
REQUIRED = ("version", "layers", "config", "calls", "generator", "power_vectors", "input_sizes")
#: ``check_config``'s arguments, in order (all in ``SAN.config``).
CONFIG_ARGS = (
    "interval", "filter_ratio", "gain", "stride_mode", "eps", "linear_method", "n_power_iter", "method",
    "max_memory", "seed",
)  # fmt: skip
WHO = "SAN.load_state_dict"


def state_dict(san: Any, version: int) -> dict[str, Any]:
    config = {k: v for k, v in san.config.items() if k not in RUNTIME_KEYS}
    return {
        "version": version,
        "layers": list(san.layers),
        "config": {**config, "layer_gains": dict(san.config["layer_gains"])},
        "calls": san.calls,
        "generator": san.generator.get_state(),
        "power_vectors": {n: u.detach().cpu().clone() for n, u in san.power_vectors.items()},
        "input_sizes": dict(san.input_sizes),
        "seen_sizes": {n: list(s) for n, s in san.seen_sizes.items()},
        "pending": sorted(san._pending),
        "scales": {n: m.s.detach().cpu().clone() for n, m in san.scales.items()},
    }


def _name(name: Any) -> Any:
    """A layer name recorded under ``torch.compile`` (``_orig_mod.`` prefix) as the uncompiled critic names it."""
    return name.removeprefix("_orig_mod.") if isinstance(name, str) else name


def _names(mapping: Any, key: str) -> dict[str, Any]:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{WHO}: expected {key!r} to be a mapping {{layer name: ...}}, got {type(mapping).__name__}")
    return {_name(n): v for n, v in mapping.items()}


def _selected(names: Iterable[Any], layers: Mapping[str, nn.Module], key: str, kinds: tuple[type, ...]) -> None:
    bad = sorted(str(n) for n in names if not isinstance(layers.get(n), kinds))
    if bad:
        what = "/".join(k.__name__.lstrip("_") for k in kinds)
        raise ValueError(f"{WHO}: {key!r} names {bad}, which are not selected {what} layers; selected: {list(layers)}")


def validate(san: Any, state: Mapping[str, Any], version: int) -> dict[str, Any]:
    """Everything :func:`load_state_dict` would apply, checked (raises ``ValueError``, changing nothing)."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{WHO}: expected a mapping (from SAN.state_dict()), got {type(state).__name__}")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"{WHO}: the state has no key {missing[0]!r} (missing {missing}; it has {sorted(state)})")
    if state["version"] != version:
        raise ValueError(f"{WHO}: expected version {version}, got {state['version']!r}")
    layers = san.layers
    names = [_name(n) for n in state["layers"]]
    if names != list(layers):
        lost, extra = sorted(set(layers) - set(names)), sorted(set(names) - set(layers))
        raise ValueError(f"{WHO}: layers differ; missing from state {lost}, unexpected {extra}")
    config = state["config"]
    if not isinstance(config, Mapping):
        raise ValueError(f"{WHO}: expected 'config' to be a mapping, got {type(config).__name__}")
    unknown = sorted(str(k) for k in config if k not in san.config)
    if unknown:
        raise ValueError(f"{WHO}: unknown config keys {unknown}; expected some of {sorted(san.config)}")
    new = {k: v for k, v in {**san.config, **config}.items() if k not in RUNTIME_KEYS}
    try:
        check_config(*(new[k] for k in CONFIG_ARGS))
        check_form(new["form"])
        new["layer_gains"] = check_layer_gains(_names(new.get("layer_gains") or {}, "layer_gains"), layers)
    except ValueError as exc:
        raise ValueError(f"{WHO}: invalid config in the state: {exc}") from None
    if new["form"] != san.config["form"]:
        raise ValueError(f"{WHO}: the state is of form {new['form']!r}, this SAN of {san.config['form']!r}")
    calls = state["calls"]
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
        raise ValueError(f"{WHO}: expected 'calls' to be an int >= 0, got {calls!r}")
    generator = state["generator"]
    own = san.generator.get_state()
    if not isinstance(generator, Tensor) or generator.dtype != own.dtype or generator.shape != own.shape:
        got = f"{generator.dtype} {tuple(generator.shape)}" if isinstance(generator, Tensor) else type(generator)
        raise ValueError(
            f"{WHO}: expected 'generator' to be a {own.dtype} tensor of shape {tuple(own.shape)}, got {got}"
        )
    try:
        torch.Generator().set_state(generator)
    except RuntimeError as exc:
        raise ValueError(f"{WHO}: 'generator' is not a valid generator state ({exc})") from None
    vectors = _names(state["power_vectors"], "power_vectors")
    _selected(vectors, layers, "power_vectors", (nn.Linear, nn.Embedding))
    for n, u in vectors.items():
        rows = raw_weight(layers[n]).shape[0]
        if not isinstance(u, Tensor) or not u.is_floating_point() or tuple(u.shape) != (rows,):
            got = f"{u.dtype} {tuple(u.shape)}" if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(f"{WHO}: power_vectors[{n!r}]: expected a float tensor of shape ({rows},), got {got}")
    mode = new["stride_mode"]
    sizes = _names(state["input_sizes"], "input_sizes")
    _selected(sizes, layers, "input_sizes", (nn.modules.conv._ConvNd,))
    latest = {n: check_size(n, layers[n], s, mode) for n, s in sizes.items()}
    seen_state = _names(state.get("seen_sizes", {n: [s] for n, s in latest.items()}), "seen_sizes")
    _selected(seen_state, layers, "seen_sizes", (nn.modules.conv._ConvNd,))
    seen = {n: [check_size(n, layers[n], s, mode) for s in v] for n, v in seen_state.items()}
    pending = [_name(n) for n in state.get("pending", ())]
    _selected(pending, layers, "pending", (nn.Module,))
    scales = _names(state.get("scales", {}), "scales")
    if set(scales) != set(san.scales):
        raise ValueError(f"{WHO}: expected scales for {sorted(san.scales)}, got {sorted(scales)}")
    for n, value in scales.items():
        if not isinstance(value, Tensor) or value.numel() != 1 or not value.is_floating_point():
            raise ValueError(f"{WHO}: scales[{n!r}]: expected a 0-d float tensor, got {value!r}")
    return dict(config=new, calls=calls, generator=generator, vectors=vectors, latest=latest, seen=seen,
                pending=set(pending), scales=scales)  # fmt: skip


def load_state_dict(san: Any, state: Mapping[str, Any], version: int) -> None:
    """Validate everything (:func:`validate`), then restore: a mismatch raises ``ValueError``, changing nothing."""
    new = validate(san, state, version)
    san.config.update(new["config"])
    san.calls = new["calls"]
    san.generator.set_state(new["generator"])
    san.power_vectors = {n: u.to(raw_weight(san.layers[n]).device).clone() for n, u in new["vectors"].items()}
    san.input_sizes.update(new["latest"])
    for n, sizes in new["seen"].items():
        san.seen_sizes[n] = list(sizes)
    san._pending = new["pending"]
    with torch.no_grad():
        for n, value in new["scales"].items():
            san.scales[n].s.copy_(value.reshape(()))
