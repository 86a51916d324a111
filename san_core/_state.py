"""``SAN.state_dict`` / ``SAN.load_state_dict``: everything a bit-for-bit resume needs besides the model's weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._reparam import raw_weight
from ._validate import check_layer_gains, check_size

#: Run-time choices that a state does not carry over (they depend on where the run happens).
RUNTIME_KEYS = ("sync_free",)


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
        "pending": sorted(san._pending),
        "scales": {n: m.s.detach().cpu().clone() for n, m in san.scales.items()},
    }


def load_state_dict(san: Any, state: Mapping[str, Any], version: int) -> None:
    """Validate everything first, then restore: a mismatch raises ``ValueError`` and changes nothing."""
    if state.get("version") != version:
        raise ValueError(f"SAN.load_state_dict: expected version {version}, got {state.get('version')!r}")
    if list(state["layers"]) != list(san.layers):
        missing = sorted(set(san.layers) - set(state["layers"]))
        extra = sorted(set(state["layers"]) - set(san.layers))
        raise ValueError(f"SAN.load_state_dict: layers differ; missing from state {missing}, unexpected {extra}")
    sizes = {n: check_size(n, san.layers[n], s) for n, s in state["input_sizes"].items()}
    gains = check_layer_gains(state["config"].get("layer_gains"), san.layers)
    form = state["config"].get("form", "rescale")
    if form != san.config["form"]:
        raise ValueError(f"SAN.load_state_dict: the state is of form {form!r}, this SAN of {san.config['form']!r}")
    scales = dict(state.get("scales", {}))
    if set(scales) != set(san.scales):
        raise ValueError(f"SAN.load_state_dict: expected scales for {sorted(san.scales)}, got {sorted(scales)}")
    san.config.update({k: v for k, v in state["config"].items() if k not in RUNTIME_KEYS})
    san.config["layer_gains"] = gains
    san.calls = int(state["calls"])
    san.generator.set_state(state["generator"])
    san.power_vectors = {n: u.to(raw_weight(san.layers[n]).device).clone() for n, u in state["power_vectors"].items()}
    san.input_sizes.update(sizes)
    san._pending = set(state.get("pending", ()))
    with torch.no_grad():
        for n, value in scales.items():
            san.scales[n].s.copy_(value)
