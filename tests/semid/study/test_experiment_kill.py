"""`kill -9` of `semid experiment` at a random moment, then the same command again: the same report numbers.

The moment is drawn uniformly over the uninterrupted run's duration, so across CI runs the kill lands in
every stage (corpus, RQ-VAE, SID assignment, token caches, ranker fits, report). The seed is printed;
``SEMID_KILL_SEED=<seed>`` replays one.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# a study small enough to run twice in CI, still one of each stage and a SID representation
_SET = ["representations=[hash_8k,prefix_ngram,spm_64]", "ranker_variants=[]", "settings=[without_history]", "stability.enabled=false"]
_ENV = {**os.environ, "SEMID_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def _cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "semid.cli", "experiment", "--preset", "tiny", "--out", str(out),
            *[x for o in _SET for x in ("--set", o)]]


def _numbers(out: Path) -> dict:
    """Every number of the report but speeds and timings (those differ between any two runs)."""
    def strip(d):  # noqa: ANN001, ANN202
        return {k: strip(v) for k, v in d.items() if k != "samples_per_s"} if isinstance(d, dict) else d

    report = json.loads((out / "report.json").read_text())
    return strip({"summary": report["summary"], "table1": report["table1"], "lookups": report["lookups"],
                  "findings": report["findings"]})


def _children_of(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            kids += [int(c) for c in children.read_text().split()]
    return kids


def _descendants_of(pid: int) -> list[int]:
    """Children and their children: forked fits are children of the launcher's forkserver (semid.study.warm_start)."""
    kids = _children_of(pid)
    return kids + [d for k in kids for d in _descendants_of(k)]


def test_kill_9_at_a_random_moment_then_rerun_gives_the_same_report(tmp_path):
    t0 = time.perf_counter()
    ref = subprocess.run(_cmd(tmp_path / "ref"), capture_output=True, text=True, env=_ENV, timeout=900)
    assert ref.returncode == 0, ref.stderr[-3000:]
    # nothing of the jobs' start-up reaches the experiment's stderr (forked jobs run `python -m semid.cli` again
    # as multiprocessing's main module, which runpy used to warn about)
    assert not ref.stderr.strip(), ref.stderr[-3000:]
    duration = time.perf_counter() - t0

    seed = int(os.environ.get("SEMID_KILL_SEED", random.randrange(1_000_000)))
    moment = random.Random(seed).uniform(0.05, 0.95) * duration
    print(f"SEMID_KILL_SEED={seed}: kill -9 after {moment:.1f}s of a {duration:.1f}s run")
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_ENV)
    try:
        proc.wait(timeout=moment)
    except subprocess.TimeoutExpired:
        kids = _descendants_of(proc.pid) if sys.platform.startswith("linux") else []
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: its fit processes must die with it
        proc.wait()
        for _ in range(100):  # they get SIGKILL from the kernel; give it a moment to be delivered
            if not any(Path(f"/proc/{k}").exists() and "zombie" not in _state(k) for k in kids):
                break
            time.sleep(0.1)
        assert not any(Path(f"/proc/{k}").exists() and "zombie" not in _state(k) for k in kids), \
            "fit processes outlived the killed experiment"
    first = proc.stdout.read() if proc.stdout else ""
    print(first[-2000:])

    rerun = subprocess.run(_cmd(out), capture_output=True, text=True, env=_ENV, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert _numbers(out) == _numbers(tmp_path / "ref")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"
