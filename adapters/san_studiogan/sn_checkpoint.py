"""Reading a spectral-norm (``apply_d_sn``) D checkpoint into a SAN D: weights renamed, Adam state re-ordered.

A D built with ``apply_d_sn: True`` stores each normalized layer's weight as ``X.weight_orig`` (plus
the power-iteration vectors ``X.weight_u``/``X.weight_v``); the SAN D has the same architecture with
plain ``X.weight``. :func:`san_core.convert_spectral_norm_state_dict` renames the former to the
latter (``u``/``v`` dropped). Spectral norm also moves ``weight`` behind ``bias`` in each layer's
parameter order, and ``d_optimizer.state_dict()`` indexes its per-parameter state (Adam's moments)
by that order, so the optimizer state is re-indexed by parameter name here; loading it unchanged
would hand a bias's moments to a weight. A SAN D of ``d_san_form: reparametrize`` keeps each raw weight as
``X.parametrizations.weight.original`` (with the buffer ``X.parametrizations.weight.0.s``): ``X.weight`` goes there,
and ``s`` keeps the SAN D's own value (SAN sets it at its next normalization).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, cast

import torch
from torch import nn

from san_core import convert_spectral_norm_state_dict, to_reparametrized_keys, unwrap_model


def convert_sn_checkpoint(
    ckpt: Mapping[str, Any], model: nn.Module, optimizer: Optional[torch.optim.Optimizer]
) -> Optional[tuple[dict[str, Any], list[str]]]:
    """``None`` when ``ckpt["state_dict"]`` has no spectral-norm keys; else ``(converted ckpt, notes)``.

    The converted checkpoint is a new dict (tensors shared) whose ``state_dict`` fits the SAN D and
    whose ``optimizer`` entry, when present, is re-indexed for ``optimizer``; when that cannot be
    done exactly (another parameter set, several parameter groups, a moment of the wrong shape) the
    entry is dropped and ``notes`` says why, so the caller loads the weights without it.
    """
    state_dict = ckpt.get("state_dict")
    if not isinstance(state_dict, Mapping):
        return None
    converted = convert_spectral_norm_state_dict(state_dict)
    if list(converted) == list(state_dict):
        return None
    converted = to_reparametrized_keys(converted, model.state_dict())
    out = {**ckpt, "state_dict": converted}
    notes: list[str] = []
    saved_opt = ckpt.get("optimizer")
    if saved_opt is not None and optimizer is not None:
        remapped = remap_optimizer_state(saved_opt, list(converted), model, optimizer)
        if isinstance(remapped, str):
            notes.append(f"its D optimizer state was not loaded ({remapped})")
            del out["optimizer"]
        else:
            out["optimizer"] = remapped
    return out, notes


def remap_optimizer_state(
    saved: Mapping[str, Any], sn_keys: list[str], model: nn.Module, optimizer: torch.optim.Optimizer
) -> Any:
    """Re-index ``saved`` (an SN D's ``d_optimizer.state_dict()``) for ``optimizer`` of the SAN D.

    ``sn_keys`` are the SN D's converted state-dict keys in their saved order; its parameters, in
    that order, are the saved optimizer's parameters (StudioGAN builds ``d_optimizer`` from
    ``Dis.named_parameters()``). Returns the new state dict, or a string saying why it cannot.
    """
    names = {id(p): n for n, p in unwrap_model(model).named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    current = [names.get(id(p)) for p in params]
    groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    if None in current or len(optimizer.param_groups) != 1 or not isinstance(groups, list) or len(groups) != 1:
        return "expected one parameter group holding D's parameters in the checkpoint and in d_optimizer"
    current_names = cast(list[str], current)  # no None (checked above)
    wanted = set(current_names)
    sn_order = [k for k in sn_keys if k in wanted]
    saved_ids = list(groups[0]["params"])
    if sorted(sn_order) != sorted(current_names) or len(saved_ids) != len(sn_order):
        return f"it holds {len(saved_ids)} parameters, d_optimizer {len(current_names)} with other names"
    index = dict(zip(sn_order, saved_ids))
    state: dict[int, Any] = {}
    for i, (name, param) in enumerate(zip(current_names, params)):
        entry = saved["state"].get(index[name])
        if entry is None:
            continue
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                return f"{key} of {name} has shape {tuple(value.shape)}, expected {tuple(param.shape)}"
        state[i] = entry
    return {"state": state, "param_groups": [{**groups[0], "params": list(range(len(current)))}]}
