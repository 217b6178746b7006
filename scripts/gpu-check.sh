#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go and under 8 minutes (semid bench gpu: FBGEMM TBE vs nn.EmbeddingBag
# lookups on the device, one `semid rank fit` of spm_8k on the GPU with NCCL, `semid plan` for this machine):
#     bash scripts/gpu-check.sh [OUT]          # default OUT=runs/bench-gpu -> gpu.json, gpu.md
# On a machine without CUDA it fails at once with one line and exit code 2. PYTHON picks the interpreter
# (default: the project's .venv, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/bench-gpu}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
# 470 s for the checks themselves (their own budget is 450 s), leaving the rest of 8 minutes for start-up
exec timeout --signal=TERM --kill-after=10 470 "$py" -m semid.cli bench gpu --out "$out" --budget-s 450
