#!/usr/bin/env bash
# One-step set-up on a fresh machine: a virtual environment at .venv in the repo root, torch first, then this
# package (editable) with the extras given as $1 (default: dev). Idempotent: re-running installs only what is missing.
#   SAN_TORCH  the torch requirement installed when .venv has no torch yet (default torch==2.13.0; any
#              torch>=2.1 works: e.g. SAN_TORCH="torch==2.5.1" or a CUDA wheel index via PIP_INDEX_URL).
#   PYTHON     the interpreter that creates .venv (default python3).
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-dev}"
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "bootstrap: installing ${SAN_TORCH:-torch==2.13.0} first" >&2
  "${pip[@]}" install -q "${SAN_TORCH:-torch==2.13.0}"
fi
# Pin the torch already installed so an extra that pulls torchvision cannot swap it for another build.
"${pip[@]}" install -q -e ".[${extras}]" "torch==$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')"
echo "bootstrap: .venv ready (extras: ${extras}; $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))" >&2
