"""SAN layers that drop in for BigGAN-PyTorch's ``SNConv2d`` / ``SNLinear`` / ``SNEmbedding``.

They take the SN classes' constructor arguments (``num_svs``, ``num_itrs``, ``eps`` beside the usual
``nn`` ones) but hold a plain ``weight`` Parameter that :class:`san_core.SAN` divides in place after each
critic step: convs by ``‖W‖₀,∞`` (Lemma 1, exact under the circular padding they use), linear and
embedding layers by their top singular value ``σ₁``. Each keeps a one-element ``sv0`` buffer (the shape
SN's buffer has) holding the constant measured at the last normalization, before ``W`` was divided by
it, so BigGAN's ``utils.get_SVs`` (every state-dict key containing ``"sv"``) logs SAN's constants.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict, Union, cast

import torch
from torch import Tensor, nn

#: Layer kinds a patch can cover, and the ajbrock SN class each kind replaces.
LAYER_KINDS: tuple[str, ...] = ("conv", "linear", "embedding")
SN_CLASS_NAMES: dict[str, str] = {"conv": "SNConv2d", "linear": "SNLinear", "embedding": "SNEmbedding"}


class SANLayer:
    """Mixin: SN-compatible bookkeeping (``num_svs``, ``num_itrs``, ``eps``) and the ``sv0`` buffer.

    ``eps`` is kept for signature compatibility only; SAN's own clamp is the ``eps`` of its config.
    """

    sv0: Tensor

    def _init_san(self, num_svs: int, num_itrs: int, eps: float, device: Any = None) -> None:
        for key, value in (("num_svs", num_svs), ("num_itrs", num_itrs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: expected {key} to be an int >= 1, got {value!r}")
        self.num_svs, self.num_itrs, self.eps = num_svs, num_itrs, float(eps)
        self.register_buffer("sv0", torch.ones(1, device=device))  # type: ignore[attr-defined]

    @property
    def sv(self) -> list[Tensor]:
        """Like SN's ``sv`` list: the logged constants (SAN keeps one)."""
        return [self.sv0]

    def record_constant_(self, constant: Tensor) -> None:
        """Store the constant ``W`` was just divided by (no host sync)."""
        with torch.no_grad():
            self.sv0.copy_(constant.detach().reshape(1).to(self.sv0.device, self.sv0.dtype))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # An ajbrock-SN checkpoint also holds the power-iteration vectors u0.. and extra sv1..: not ours.
        for key in [k for k in state_dict if k.startswith(prefix) and _is_sn_extra(k[len(prefix) :])]:
            state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]


def _is_sn_extra(local_key: str) -> bool:
    """``u0``, ``u1``... and ``sv1``, ``sv2``...: SN state a SAN layer does not have."""
    if local_key[:1] == "u" and local_key[1:].isdigit():
        return True
    return local_key[:2] == "sv" and local_key[2:].isdigit() and local_key[2:] != "0"


class SANConv2d(SANLayer, nn.Conv2d):
    """``nn.Conv2d`` with circular padding (it pads itself; SN's conv handed ``padding`` to ``F.conv2d``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, tuple[int, int]],
        stride: Union[int, tuple[int, int]] = 1,
        padding: Union[int, tuple[int, int], str] = 0,
        dilation: Union[int, tuple[int, int]] = 1,
        groups: int = 1,
        bias: bool = True,
        num_svs: int = 1,
        num_itrs: int = 1,
        eps: float = 1e-12,
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "circular",
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        nn.Conv2d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self._init_san(num_svs, num_itrs, eps, device)


class SANLinear(SANLayer, nn.Linear):
    """``nn.Linear`` normalized by ``σ₁(W)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        num_svs: int = 1,
        num_itrs: int = 1,
        eps: float = 1e-12,
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_san(num_svs, num_itrs, eps, device)


class SANEmbedding(SANLayer, nn.Embedding):
    """``nn.Embedding`` normalized by ``σ₁(W)`` of its ``(num_embeddings, embedding_dim)`` table."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: Optional[int] = None,
        max_norm: Optional[float] = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Optional[Tensor] = None,
        num_svs: int = 1,
        num_itrs: int = 1,
        eps: float = 1e-12,
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        nn.Embedding.__init__(
            self,
            num_embeddings,
            embedding_dim,
            padding_idx,
            max_norm,
            norm_type,
            scale_grad_by_freq,
            sparse,
            _weight,
            device=device,
            dtype=dtype,
        )
        self._init_san(num_svs, num_itrs, eps, device)


class _SNKwargs(TypedDict):
    """The SN-bookkeeping keyword arguments every SAN layer takes."""

    num_svs: int
    num_itrs: int
    eps: float
    device: Any


#: A SAN layer as the module it also is.
SANModule = Union[SANConv2d, SANLinear, SANEmbedding]

SAN_CLASSES: dict[str, type] = {"conv": SANConv2d, "linear": SANLinear, "embedding": SANEmbedding}
SAN_LAYER_TYPES: tuple[type, ...] = (SANConv2d, SANLinear, SANEmbedding)


def layer_kind(layer: nn.Module) -> Optional[str]:
    """``"conv"`` (2-D), ``"linear"``, ``"embedding"`` or ``None``."""
    if isinstance(layer, nn.Conv2d):
        return "conv"
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, nn.Embedding):
        return "embedding"
    return None


def is_ajbrock_sn(layer: nn.Module) -> bool:
    """Class-style ajbrock SN (BigGAN-PyTorch ``layers.SN*``, mmagic's ``biggan_snmodule``), by duck typing.

    A Conv2d/Linear/Embedding subclass, not a SAN layer, with ``u0`` and ``sv0`` buffers, ``num_svs``
    and a ``weight`` Parameter that it normalizes inside ``forward``.
    """
    return (
        layer_kind(layer) is not None
        and not isinstance(layer, SANLayer)
        and "u0" in layer._buffers
        and "sv0" in layer._buffers
        and hasattr(layer, "num_svs")
        and isinstance(layer._parameters.get("weight"), nn.Parameter)
    )


def san_layer_from(layer: nn.Module) -> SANModule:
    """A SAN layer holding the *same* ``weight``/``bias`` Parameter objects as the SN ``layer``.

    Built on the meta device first, so no memory is allocated and no random numbers are drawn.
    """
    kind = layer_kind(layer)
    if kind is None or not is_ajbrock_sn(layer):
        raise TypeError(f"san_layer_from: expected an ajbrock-style SN layer, got {type(layer).__name__}")
    common = _SNKwargs(
        num_svs=int(cast(int, layer.num_svs)),
        num_itrs=int(getattr(layer, "num_itrs", getattr(layer, "num_iters", 1))),
        eps=float(getattr(layer, "eps", 1e-12)),
        device="meta",
    )
    new: SANModule
    if kind == "conv":
        conv = cast(nn.Conv2d, layer)  # 2-D conv: its size attributes are pairs
        new = SANConv2d(
            conv.in_channels,
            conv.out_channels,
            cast(tuple[int, int], conv.kernel_size),
            cast(tuple[int, int], conv.stride),
            cast(Union[tuple[int, int], str], conv.padding),
            cast(tuple[int, int], conv.dilation),
            conv.groups,
            conv.bias is not None,
            **common,
        )
    elif kind == "linear":
        linear = cast(nn.Linear, layer)
        new = SANLinear(linear.in_features, linear.out_features, linear.bias is not None, **common)
    else:
        emb = cast(nn.Embedding, layer)
        new = SANEmbedding(
            emb.num_embeddings,
            emb.embedding_dim,
            emb.padding_idx,
            emb.max_norm,
            emb.norm_type,
            emb.scale_grad_by_freq,
            emb.sparse,
            **common,
        )
    # is_ajbrock_sn checked: weight is a Parameter, bias a Parameter or None, sv0 a registered tensor.
    new._parameters["weight"] = cast(nn.Parameter, layer.weight)
    if "bias" in new._parameters:
        new._parameters["bias"] = cast(Optional[nn.Parameter], layer.bias)
    sv0 = cast(Tensor, layer._buffers["sv0"])
    new._buffers["sv0"] = torch.ones(1, device=sv0.device, dtype=sv0.dtype)
    new.train(layer.training)
    return new
