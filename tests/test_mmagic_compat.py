"""san_mmagic's import guard and compat step (mmcv-lite stub, weights-only checkpoints of MMEngine)."""

from __future__ import annotations

import importlib.util
import io
import sys

import pytest
import torch

MISSING = [m for m in ("mmengine", "mmagic", "mmcv") if importlib.util.find_spec(m) is None]
needs_mmagic = pytest.mark.skipif(
    bool(MISSING), reason=f'needs the [mmagic] extra (pip install "sparsity-aware-norm[mmagic]"); missing {MISSING}'
)


@needs_mmagic
def test_apply_is_idempotent_and_mmagic_imports() -> None:
    from san_mmagic import compat

    assert compat.apply() == {
        "numpy_aliases": False,
        "torchvision": False,
        "mmcv_ext_stub": False,
        "mmengine_checkpoints": False,
    }
    import mmagic.models  # noqa: F401  (imports mmcv.ops, which loads mmcv._ext)
    import numpy as np

    assert np.bool8 is np.bool_


@needs_mmagic
def test_mmcv_ext_stub_keeps_mmcv_full_unavailable_and_fails_on_call() -> None:
    import san_mmagic
    from mmengine.utils.dl_utils import mmcv_full_available

    ext = sys.modules["mmcv._ext"]
    if not isinstance(ext, san_mmagic.compat._MissingExt):
        pytest.skip("a full mmcv build with compiled ops is installed: no stub needed")
    assert mmcv_full_available() is False
    assert ext.__spec__.loader is None
    with pytest.raises(san_mmagic.compat.MissingMMCVOp, match=r"'nms'.*mmcv-lite"):
        ext.nms()
    with pytest.raises(AttributeError):
        ext.__wrapped__  # noqa: B018  (dunder lookups must not be faked)


@needs_mmagic
def test_history_buffer_loads_weights_only() -> None:
    import numpy as np
    import san_mmagic  # noqa: F401
    from mmengine.logging import HistoryBuffer, MessageHub

    hub = MessageHub("san-compat-test")
    for value in (1.0, 2.0, 4.0):
        hub.update_scalar("train/loss", value)
    hub.update_info("iter", 3)
    buf = io.BytesIO()
    torch.save({"message_hub": hub.state_dict(), "meta": {"seed": np.int64(3)}}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    history = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(history, HistoryBuffer)
    assert history.mean() == pytest.approx(7 / 3)
    assert loaded["message_hub"]["runtime_info"]["iter"] == 3


@needs_mmagic
def test_weights_only_getattr_is_restricted_to_history_buffer_statistics() -> None:
    import pickle

    import san_mmagic  # noqa: F401
    from mmengine.logging import HistoryBuffer

    class Sneaky:
        def __reduce__(self):  # a pickle that asks for an arbitrary attribute through builtins.getattr
            return (getattr, (HistoryBuffer, "__init__"))

    buf = io.BytesIO()
    torch.save({"x": Sneaky()}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="only HistoryBuffer's statistic methods"):
        torch.load(buf, weights_only=True)
