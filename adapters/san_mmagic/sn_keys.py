"""An SN baseline's checkpoint keys in the form of ``SANHook``'s critic (``load_from`` an SN run without SAN state)."""

from __future__ import annotations

import re

from san_core import SAN, convert_spectral_norm_state_dict, to_reparametrized_keys

_CLASS_SN_BUFFER = re.compile(r"\.(u|sv)\d+$")


def map_spectral_norm_keys(state: dict, san: SAN, module: str) -> dict:
    """Spectral-norm keys of every SAN layer of ``model.<module>`` in the SAN critic's form.

    ``<module>.<layer>.weight_orig`` (and the parametrization form) -> ``.weight``
    (:func:`san_core.convert_spectral_norm_state_dict`); the ``u{i}``/``sv{i}`` buffers of mmagic's class-style SN
    (which that conversion does not know) are dropped; then, for a layer of ``form="reparametrize"``,
    :func:`san_core.to_reparametrized_keys`: ``.weight`` -> ``.parametrizations.weight.original`` (the raw ``W``)
    with ``s`` the checkpoint's own if it has one, else the critic's until SAN's next normalization. Keys outside
    the SAN layers pass unchanged (so another parametrized layer of the model is never touched).
    """
    prefixes = tuple(f"{module}.{name}." for name in san.layers)
    ours = {k: v for k, v in state.items() if k.startswith(prefixes)}
    out = {k: v for k, v in state.items() if k not in ours}
    plain = {k: v for k, v in convert_spectral_norm_state_dict(ours).items() if not _CLASS_SN_BUFFER.search(k)}
    like = {f"{module}.{name}.{k}": v for name, layer in san.layers.items() for k, v in layer.state_dict().items()}
    out.update(to_reparametrized_keys(plain, like))
    return out
