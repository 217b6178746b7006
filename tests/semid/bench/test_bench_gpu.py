"""The prepared GPU checks: on a machine without CUDA, one line and exit code 2, from the command and the script.
(With CUDA the checks themselves run: scripts/gpu-check.sh on a GPU machine.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semid.cli import main

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the checks themselves")


def test_bench_gpu_refuses_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "gpu", "--out", str(tmp_path / "gpu")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("semid: error: bench gpu needs a CUDA GPU: ")
    assert not (tmp_path / "gpu").exists()  # refused before doing anything


def test_gpu_check_script_fails_with_one_line(tmp_path: Path) -> None:
    p = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), str(tmp_path / "gpu")], capture_output=True,
                       text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "needs a CUDA GPU" in lines[0], (p.returncode, lines)
