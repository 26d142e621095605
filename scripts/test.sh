#!/usr/bin/env bash
# The test suite: lint, then pytest (hydra's pytest plugin, pulled in by fairseq, is disabled).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure_chromium.sh
.venv/bin/ruff check spkit tests bench
exec .venv/bin/python -m pytest -p no:hydra_pytest -q "$@" tests
