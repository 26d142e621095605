#!/usr/bin/env bash
# Every benchmark at its default settings; each writes bench/results/<name>.json and prints a table.
# Ratios are measured within one run against the named reference (fairseq, full fine-tuning, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for b in ulm_throughput quantize_throughput tiny_hubert_throughput prompt_memory prompt_step_bf16 prompt_step_cost predict_latency demo_latency; do
  echo "== bench/$b.py"
  "$PY" "bench/$b.py"
done
