"""``python -m san_basicsr -opt options.yml [BasicSR's flags]`` and ``python -m san_basicsr.train_realesrgan ...``.

Runs the compat step, registers the SAN archs, :func:`san_basicsr.patch.install`, then BasicSR's own
``basicsr.train.train_pipeline`` with the command line untouched: ``-opt``, ``--launcher none|pytorch|slurm``
(DDP: ``torchrun --nproc_per_node N -m san_basicsr -opt X --launcher pytorch``), ``--auto_resume``,
``--debug``, ``--force_yml``. The Real-ESRGAN variant first imports ``realesrgan.archs/data/models``,
which is all Real-ESRGAN's ``realesrgan/train.py`` adds. ``experiments/`` and ``tb_logger/`` go under the
working directory (BasicSR's ``--auto_resume`` looks for ``./experiments/<name>``; ``SAN_BASICSR_ROOT``
moves both). A bad SAN option or a missing local file stops with one line on stderr and status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Optional

from .compat import apply as apply_compat

ENV_ROOT = "SAN_BASICSR_ROOT"
PIPELINES = ("basicsr", "realesrgan")


def main(argv: Optional[Sequence[str]] = None, *, pipeline: str = "basicsr") -> int:
    """Run BasicSR's (or Real-ESRGAN's) training with SAN; returns the exit status."""
    if pipeline not in PIPELINES:
        raise ValueError(f"san_basicsr.launcher: expected pipeline in {PIPELINES}, got {pipeline!r}")
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m san_basicsr" + (".train_realesrgan" if pipeline == "realesrgan" else "")
    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"usage: {prog} -opt OPTIONS.yml [--launcher none|pytorch|slurm] [--auto_resume] [--debug] "
            "[--force_yml KEY=VALUE ...]\n\nBasicSR's train.py with SAN discriminators (see san_basicsr)."
        )
        return 0
    apply_compat()
    import basicsr.train

    if pipeline == "realesrgan":
        # registers Real-ESRGAN's archs, datasets and models, as its realesrgan/train.py does
        import realesrgan.archs
        import realesrgan.data
        import realesrgan.models  # noqa: F401
    from .options import SANOptionError
    from .patch import install
    from .paths import MissingFileError

    install()
    root = os.path.abspath(os.environ.get(ENV_ROOT) or os.getcwd())
    saved, sys.argv = sys.argv, [prog, *argv]
    try:
        basicsr.train.train_pipeline(root)
    except (SANOptionError, MissingFileError) as err:
        print(f"san_basicsr: error: {err}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved
    return 0
