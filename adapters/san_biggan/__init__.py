"""SAN for ajbrock/BigGAN-PyTorch: SN-compatible SAN layers, patcher and launcher (``python -m san_biggan``).

- :class:`SANConv2d` / :class:`SANLinear` / :class:`SANEmbedding`: drop-ins for ``layers.SN*``.
- :func:`install_discriminator_patch`: ``Discriminator(D_param='SAN')`` builds a SAN D (and ``D.san``).
- :func:`patch_discriminator`: SN → SAN in an already-built D, same Parameters; ``.unpatch()`` undoes it.
- :func:`install_checkpoint_hooks`: BigGAN's ``utils.save_weights``/``load_weights`` also save/restore
  SAN's state (``D_san*.pth``), so a resumed run continues bit-for-bit.
- :class:`BigGANCheckout`: locate and import a checkout; the launcher lives in :mod:`san_biggan.launcher`.

Only torch and ``san_core`` are imported here; BigGAN-PyTorch itself is never imported by this package
unless you point the launcher (or :class:`BigGANCheckout`) at a checkout.
"""

from .checkout import BigGANCheckout
from .checkpoint import CheckpointHooks, san_state_file
from .checkpoint import install as install_checkpoint_hooks
from .construction import ConstructionPatch
from .construction import install as install_discriminator_patch
from .errors import SANBigGANError
from .layers import SANConv2d, SANEmbedding, SANLayer, SANLinear, is_ajbrock_sn, san_layer_from
from .normalizer import BigGANSAN
from .options import PAPER_D_BETA1, SANOptions
from .patch import DiscriminatorPatch, patch_discriminator

__all__ = [
    "PAPER_D_BETA1",
    "BigGANCheckout",
    "BigGANSAN",
    "CheckpointHooks",
    "ConstructionPatch",
    "DiscriminatorPatch",
    "SANBigGANError",
    "SANConv2d",
    "SANEmbedding",
    "SANLayer",
    "SANLinear",
    "SANOptions",
    "install_checkpoint_hooks",
    "install_discriminator_patch",
    "is_ajbrock_sn",
    "patch_discriminator",
    "san_layer_from",
    "san_state_file",
]
