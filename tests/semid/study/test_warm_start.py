"""Local jobs forked from the warm process (semid.study.warm_start): the same command as a fresh interpreter, with the
same numbers, log and exit statuses; a signal mid-day stops it with one line and the rerun resumes; the launcher
stops it like a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from semid.datamodules import Corpus
from semid.study.launchers import STOPPED, LocalLauncher, Task
from tests.rankers.conftest import FAST
from tests.semid.study.test_launchers import stop_while_running

ENV = {"OMP_NUM_THREADS": "1", "SEMID_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}


def _fit(corpus: Path, out: Path) -> list[str]:
    return ["rank", "fit", "--representation", "hash_8k", "--corpus", str(corpus), "--out", str(out)] + \
        [x for o in FAST for x in ("--set", o)]


def _task(corpus: Path, out: Path, **env: str) -> Task:
    return Task(f"fit {out.name}", _fit(corpus, out), out.with_suffix(".log"), set_env={**ENV, **env}, forkable=True)


@pytest.mark.slow  # three tiny fits and a fresh interpreter's (~40 s)
def test_a_forked_fit_is_the_fresh_interpreters_fit(signal_corpus: Path, tmp_path: Path) -> None:
    launcher = LocalLauncher(1)
    assert launcher.warm_start
    assert launcher.run(_task(signal_corpus, tmp_path / "forked")) == 0
    assert "hash_8k (without_history), day 3: CTR AUC" in (tmp_path / "forked.log").read_text()
    fresh = subprocess.run([sys.executable, "-m", "semid.cli", *_fit(signal_corpus, tmp_path / "fresh")],
                           env={**os.environ, **ENV}, capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    forked, fresh_r = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("forked", "fresh"))
    assert forked["fingerprint"] == fresh_r["fingerprint"] and forked["metrics"] == fresh_r["metrics"]

    # SIGTERM in the middle of day 1: exit 143, one line saying where; the forked rerun resumes to the same numbers
    steps_per_day = -(-Corpus(signal_corpus).read_day(0).num_rows // 256)
    stopped = _task(signal_corpus, tmp_path / "stopped", SEMID_TEST_KILL_AT_STEP=str(steps_per_day * 3 // 2),
                    SEMID_TEST_KILL_SIGNAL="TERM")
    assert launcher.run(stopped) == 143
    lines = [ln for ln in stopped.log.read_text().splitlines() if ln.startswith("semid:")]
    assert len(lines) == 1 and f"stopped by SIGTERM during rank fit {tmp_path / 'stopped'}: training day 1" in lines[0]
    assert launcher.run(_task(signal_corpus, tmp_path / "stopped")) == 0
    assert f"saved at the end of a day, step {steps_per_day})" in stopped.log.read_text()
    resumed = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert resumed["metrics"] == fresh_r["metrics"]


def test_a_forked_commands_error_is_its_own(tmp_path: Path) -> None:
    """A user error is one line and exit 2 in the task's log; the task's environment is the child's (SEMID_DEBUG
    turns the line into a traceback)."""
    launcher = LocalLauncher(1)
    argv = ["rank", "fit", "--representation", "hash_8k", "--corpus", str(tmp_path / "none"), "--out",
            str(tmp_path / "run")]
    log = tmp_path / "job.log"
    assert launcher.run(Task("fit", argv, log, set_env=ENV, forkable=True)) == 2
    said = log.read_text().strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"semid: error: {tmp_path / 'none'}"), said
    assert launcher.run(Task("fit", argv, log, set_env={**ENV, "SEMID_DEBUG": "1"}, forkable=True)) == 1
    assert "Traceback" in log.read_text()
    assert not (tmp_path / "run").exists()


def test_stop_ends_a_forked_job(signal_corpus: Path, tmp_path: Path) -> None:
    launcher = LocalLauncher(2)
    assert stop_while_running(launcher, _task(signal_corpus, tmp_path / "a"), within_s=45) == 143  # as a subprocess
    assert launcher.run(_task(signal_corpus, tmp_path / "b")) == STOPPED
    assert not (tmp_path / "b.log").exists()
