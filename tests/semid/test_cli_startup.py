"""Every ``semid`` command builds the whole parser first: that must not import torch, torchrec or Lightning
(it cost each command, ``--help`` and bad-input refusals included, ~1.5 s and ~200 MiB)."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "torchrec", "fbgemm_gpu", "lightning", "wandb")


def test_building_the_parser_imports_no_heavy_package():
    code = ("import sys, semid.cli; semid.cli.build_parser(); "
            f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building semid's parser imported {out}"

