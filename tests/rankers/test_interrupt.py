"""SIGTERM or Ctrl-C during `semid rank fit`: exit 143 / 130 with one line saying where the run stopped, and
the rerun resumes from the last day checkpoint to the uninterrupted run's numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from semid.datamodules import Corpus
from tests.rankers.conftest import FAST


@pytest.mark.parametrize("sig, code", [("TERM", 143), ("INT", 130)])
def test_a_signal_mid_day_stops_with_one_line_and_the_rerun_resumes(signal_corpus, tmp_path, sig, code) -> None:
    def cmd(out):  # noqa: ANN001, ANN202
        return [sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", "hash_8k", "--corpus",
                str(signal_corpus), "--out", str(out)] + [x for o in FAST for x in ("--set", o)]

    steps_per_day = -(-Corpus(signal_corpus).read_day(0).num_rows // 256)
    env = {**os.environ, "SEMID_TEST_KILL_AT_STEP": str(steps_per_day * 3 // 2), "SEMID_TEST_KILL_SIGNAL": sig}
    stopped = subprocess.run(cmd(tmp_path / "run"), capture_output=True, text=True, timeout=600, env=env)
    assert stopped.returncode == code, stopped.stderr[-2000:]
    lines = [ln for ln in stopped.stderr.splitlines() if ln.startswith("semid:")]
    assert len(lines) == 1 and f"stopped by SIG{sig} during rank fit {tmp_path / 'run'}: training day 1" in lines[0]
    assert "rerun the same command to resume" in lines[0] and "Traceback" not in stopped.stderr
    rerun = subprocess.run(cmd(tmp_path / "run"), capture_output=True, text=True, timeout=600, check=True)
    assert f"saved at the end of a day, step {steps_per_day})" in rerun.stdout
    full = subprocess.run(cmd(tmp_path / "full"), capture_output=True, text=True, timeout=600, check=True)
    assert full.returncode == 0
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("run", "full"))
    assert a["metrics"] == b["metrics"]


# Runs `semid rank fit` with torch's DCP writer patched to signal its own process once the second checkpoint's
# shards are written and before its metadata is (then to sleep, so that the signal lands inside the write).
_SIGNAL_IN_SAVE = """
import os, signal, sys, time
import torch.distributed.checkpoint.filesystem as fs

sig = signal.Signals["SIG" + os.environ["SIGNAL_IN_SAVE"]]
write_data, calls = fs._FileSystemWriter.write_data, []

def signalled_write(self, plan, planner):
    out = write_data(self, plan, planner)
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), sig)
        time.sleep(1.0)
    return out

fs._FileSystemWriter.write_data = signalled_write
from semid.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig, code", [("TERM", 143), ("INT", 130)])
def test_a_signal_during_a_checkpoint_write_stops_with_one_line_and_a_whole_checkpoint(signal_corpus, tmp_path, sig,
                                                                                      code) -> None:
    from semid.rankers.checkpoints import read_checkpoint

    out = tmp_path / "run"
    args = ["rank", "fit", "--representation", "hash_8k", "--corpus", str(signal_corpus), "--out", str(out)] + \
        [x for o in FAST for x in ("--set", o)]
    env = {**os.environ, "SIGNAL_IN_SAVE": sig}
    stopped = subprocess.run([sys.executable, "-c", _SIGNAL_IN_SAVE, *args], capture_output=True, text=True,
                             timeout=600, env=env)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    lines = [ln for ln in stopped.stderr.splitlines() if ln.startswith("semid:")]
    assert len(lines) == 1 and f"stopped by SIG{sig} during rank fit {out}: the end of training day 1 (its " \
        "checkpoint is saved: a rerun resumes from there)" in lines[0], lines
    assert "Traceback" not in stopped.stderr and "CheckpointException" not in stopped.stderr
    # the write finished before the stop: day 1's checkpoint, whole, and nothing half-written beside it
    steps_per_day = -(-Corpus(signal_corpus).read_day(0).num_rows // 256)
    ckpts = out / "checkpoints"
    assert read_checkpoint(ckpts / "last.ckpt")["global_step"] == 2 * steps_per_day
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"] and not (out / "results.json").exists()
    rerun = subprocess.run([sys.executable, "-m", "semid.cli", *args], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"saved at the end of a day, step {2 * steps_per_day})" in rerun.stdout
