"""An SN baseline's checkpoint keys in the form of ``SANHook``'s critic (``load_from`` an SN run without SAN state)."""

from __future__ import annotations

import re

from san_core import SAN, convert_spectral_norm_state_dict

_CLASS_SN_BUFFER = re.compile(r"\.(u|sv)\d+$")
_REPARAM = "parametrizations.weight."


def map_spectral_norm_keys(state: dict, san: SAN, module: str) -> dict:
    """Spectral-norm keys of every SAN layer of ``model.<module>`` in the SAN critic's form.

    ``<module>.<layer>.weight_orig`` (and the parametrization form) -> ``.weight``, or, for a layer of
    ``form="reparametrize"``, -> ``.parametrizations.weight.original`` (the raw ``W``) with ``s`` kept at the
    critic's own value until SAN's next normalization; the ``u``/``v`` vectors of torch SN and the
    ``u{i}``/``sv{i}`` buffers of class-style SN are dropped. Other keys pass unchanged.
    """
    prefixes = tuple(f"{module}.{name}." for name in san.layers)
    ours = {k: v for k, v in state.items() if k.startswith(prefixes)}
    out = {k: v for k, v in state.items() if k not in ours}
    reparametrized = {f"{module}.{name}.": san.scales[name] for name in san.scales}
    for key, value in convert_spectral_norm_state_dict(ours).items():
        if _CLASS_SN_BUFFER.search(key):
            continue
        head = key[: -len("weight")]
        if key.endswith(".weight") and head in reparametrized and f"{head}{_REPARAM}0.s" not in ours:
            out[f"{head}{_REPARAM}original"] = value
            out[f"{head}{_REPARAM}0.s"] = reparametrized[head].s.detach().clone()
        else:
            out[key] = value
    return out
