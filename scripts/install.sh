#!/usr/bin/env bash
# Creates .venv with the pinned TorchRec stack and installs semid in editable mode.
#   bash scripts/install.sh            # CPU (fbgemm-gpu-cpu)
#   bash scripts/install.sh cuda       # GPU: CUDA torch + fbgemm-gpu (set TORCH_CUDA=cu126 etc.)
# torchrec 1.8.0 hard-pins torchmetrics==1.0.3 and the CUDA fbgemm-gpu wheel, which
# overwrites fbgemm-gpu-cpu's files; so torchrec goes in last with --no-deps.
set -euo pipefail
variant="${1:-cpu}"
python="${PYTHON:-python3}"
venv="${VENV:-.venv}"
torch_version=2.13.0
fbgemm_version=1.8.0
torchrec_version=1.8.0

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)

case "$variant" in
  cpu)
    "${pip[@]}" "torch==$torch_version" "fbgemm-gpu-cpu==$fbgemm_version" ;;
  cuda)
    cuda="${TORCH_CUDA:-cu126}"
    "${pip[@]}" --index-url "https://download.pytorch.org/whl/$cuda" \
      "torch==$torch_version" "fbgemm-gpu==$fbgemm_version" ;;
  *)
    echo "usage: bash scripts/install.sh [cpu|cuda]" >&2; exit 2 ;;
esac
"${pip[@]}" --no-deps "torchrec==$torchrec_version"
"${pip[@]}" -e ".[dev,bench]"
"$venv/bin/python" -c "import torchrec, fbgemm_gpu, semid; print('semid installed:', semid.__version__, '| torch', __import__('torch').__version__)"
