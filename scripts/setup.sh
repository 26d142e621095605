#!/usr/bin/env bash
# Create or update the project virtualenv (.venv) with spkit's pinned set. Idempotent: a stamp keyed
# on requirements.txt, constraints.txt and pyproject.toml makes a second call a no-op.
# Needs: Python >= 3.10 with venv and pip (3.11 tested), network access to a PyPI index.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SPKIT_VENV:-.venv}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
key=$(cat requirements.txt constraints.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.spkit-setup-$key"
if [ -f "$stamp" ]; then
  exit 0
fi

echo "[setup] creating/updating $VENV with $PY ($($PY --version))"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip's warnings about this machine's unused local index folders are noise: filter them out.
pipq() {
  set +o pipefail
  "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
  local rc=${PIPESTATUS[0]}
  set -o pipefail
  return "$rc"
}
pip=(pipq install --disable-pip-version-check -q -c constraints.txt)
pipq install --disable-pip-version-check -q --upgrade pip
# 1. torch first: everything else must see this exact build.
"${pip[@]}" torch==2.14.1 torchaudio==2.11.0
# 2. fairseq compiles C/Cython extensions against the venv's numpy and torch (no build isolation).
"${pip[@]}" cython setuptools wheel numpy
"${pip[@]}" --no-build-isolation fairseq-fixed==0.12.3.1
# 3. the rest, then spkit itself (editable, so notebooks and the CLI use this checkout).
"${pip[@]}" -r requirements.txt
pipq install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import torch, torchaudio, fairseq, papermill, spkit" 2>/dev/null \
  || { echo "[setup] import check failed" >&2; exit 1; }
rm -f "$VENV"/.spkit-setup-*
touch "$stamp"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')"
