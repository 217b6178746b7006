#!/usr/bin/env bash
# Creates .venv with the locked TorchRec stack and installs semid in editable mode.
#   bash scripts/install.sh            # CPU (fbgemm-gpu-cpu); every package at its constraints.txt version
#   bash scripts/install.sh cuda       # GPU: CUDA torch + fbgemm-gpu (set TORCH_CUDA=cu126 etc.)
#   bash scripts/install.sh lock       # rewrite constraints.txt from .venv (after a deliberate upgrade)
# constraints.txt pins every package the CPU install puts in .venv (and the extras locked with it),
# as CI tested them, so a fresh clone gets the same versions and the same study numbers
# (tests/semid/test_golden_tiny.py).
# torchrec 1.8.0 hard-pins torchmetrics==1.0.3 and the CUDA fbgemm-gpu wheel, which overwrites
# fbgemm-gpu-cpu's files; so torchrec goes in last, alone, with --no-deps. Installed last, nothing
# else is resolved against its pins, and pip prints no dependency-conflict ERROR (pip skips that
# check for a --no-deps install); `pip check` below confirms its two unmet pins are the only ones.
set -euo pipefail
cd "$(dirname "$0")/.."
variant="${1:-cpu}"
python="${PYTHON:-python3}"
venv="${VENV:-.venv}"
constraints=constraints.txt
pin() {  # the locked version of the package whose name matches regex $1 (pip freeze spells names variously)
  sed -n "s/^$1==//Ip" "$constraints" | grep . || { echo "install.sh: $1 is not pinned in $constraints" >&2; return 1; }
}

if [ "$variant" = lock ]; then
  [ -x "$venv/bin/python" ] || { echo "install.sh lock: no $venv; run bash scripts/install.sh first" >&2; exit 2; }
  frozen="$("$venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check)"
  grep -qi '^fbgemm[-_]gpu[-_]cpu==' <<<"$frozen" || {
    echo "install.sh lock: $venv is not a CPU install (no fbgemm-gpu-cpu); lock from the CPU install CI tests" >&2; exit 2; }
  {
    echo "# Every package in $venv when it was locked, at the version CI tested: all that 'bash scripts/install.sh'"
    echo "# (CPU) installs, plus any extra installed there (e.g. .[text]). install.sh installs with"
    echo "# -c $constraints, so a fresh clone gets exactly these; a pin nothing asks for installs nothing."
    echo "# Written by 'bash scripts/install.sh lock' from $venv; do not edit by hand. torch is pinned without"
    echo "# its local label (+cpu, +cu126): the same pin serves the cpu and cuda variants."
    # torch 2.13.0+cpu -> torch==2.13.0: '+cpu' exists only on the PyTorch CPU index and this machine's wheel cache
    sed 's/^\(torch==[^+]*\)+.*/\1/' <<<"$frozen"
  } >"$constraints"
  echo "wrote $constraints: $(grep -vc '^#' "$constraints") packages"
  exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)

case "$variant" in
  cpu)
    "${pip[@]}" -c "$constraints" torch fbgemm-gpu-cpu -e ".[dev,bench,text,cluster,docs]" ;;
  cuda)
    # CUDA torch and fbgemm-gpu come from the PyTorch index, which need not carry the locked versions
    # of torch's pure-Python dependencies; so this step pins only torch and fbgemm-gpu, and the next
    # one (with the constraints) moves those dependencies to their locked versions. The CUDA runtime
    # wheels (nvidia-*, triton) are not in constraints.txt: CI, on CPU, never installs them.
    cuda="${TORCH_CUDA:-cu126}"
    torch_version="$(pin torch)"  # assignments, so that set -e stops on a missing pin
    fbgemm_version="$(pin 'fbgemm[-_]gpu[-_]cpu')"  # fbgemm-gpu and fbgemm-gpu-cpu are released together
    "${pip[@]}" --index-url "https://download.pytorch.org/whl/$cuda" \
      "torch==$torch_version" "fbgemm-gpu==$fbgemm_version"
    "${pip[@]}" -c "$constraints" -e ".[dev,bench,text,cluster,docs]" ;;
  *)
    echo "usage: bash scripts/install.sh [cpu|cuda|lock]" >&2; exit 2 ;;
esac
"${pip[@]}" -c "$constraints" --no-deps torchrec

# torchrec's metadata pins are unmet on purpose; any other broken requirement is a real failure
problems="$("$venv/bin/python" -m pip check --disable-pip-version-check 2>&1 || true)"
unexpected="$(grep -Ev '^torchrec [^ ]+ (requires fbgemm-gpu, which is not installed\.|has requirement torchmetrics==)' \
  <<<"$problems" | grep -v '^No broken requirements found\.$' || true)"
if [ -n "$unexpected" ]; then
  printf 'install.sh: pip check found broken requirements:\n%s\n' "$unexpected" >&2
  exit 1
fi
echo "pip check: only torchrec's own pins (torchmetrics==1.0.3, CUDA fbgemm-gpu) are unmet, on purpose (README: Set up)"
"$venv/bin/python" -c "import torchrec, fbgemm_gpu, semid; print('semid installed:', semid.__version__, '| torch', __import__('torch').__version__)"
