"""``unwrap_model``: the critic inside DDP/DataParallel-style wrappers and ``torch.compile``."""

from __future__ import annotations

from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DataParallel``/``DistributedDataParallel``-style wrappers (``.module`` chains) and
    ``torch.compile`` (``._orig_mod``), so layer names never carry ``module.`` or ``_orig_mod.`` prefixes."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(model, wrappers) or type(model).__name__.endswith("DistributedDataParallel"):
            inner = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
            inner = model._orig_mod
        else:
            return model
        assert isinstance(inner, nn.Module)
        model = inner
