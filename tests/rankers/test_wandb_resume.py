"""One W&B policy: offline without a login, one run id per run directory, so a fit killed with -9 and
resumed continues the same W&B run; the final summary holds the results' metrics."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from datamodules import Corpus
from semid.core.loggers import wandb_mode, wandb_run_id
from tests.rankers.conftest import FAST


def test_a_killed_and_resumed_fit_continues_one_wandb_run(signal_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [o for o in FAST if not o.startswith("trainer.loggers")] + ["trainer.loggers=[csv,wandb]"]
    cmd = [sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", "hash_8k", "--corpus",
           str(signal_corpus), "--out", str(out)] + [x for o in sets for x in ("--set", o)]
    # no WANDB_* of this process: an earlier in-process W&B run leaves its service address (WANDB_SERVICE)
    # there, and a child told to talk to a finished service fails
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no ~/.netrc login: offline by policy, not by the test's environment
    steps_per_day = -(-Corpus(signal_corpus).read_day(0).num_rows // 256)
    killed = subprocess.run(cmd, env={**env, "SEMID_TEST_KILL_AT_STEP": str(steps_per_day * 3 // 2)},
                            capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=True)
    runs = sorted((out / "wandb").glob("offline-run-*"))
    run_id = wandb_run_id(out)
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs)  # two attempts, one W&B run
    summary = json.loads(subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary",
                                         "--json", str(runs[-1])], capture_output=True, text=True,
                                        check=True).stdout)["summary"]
    res = json.loads((out / "results.json").read_text())
    assert abs(summary["eval/ctr_auc/overall"] - res["metrics"]["ctr"]["overall"]["auc"]) < 1e-9


def test_mode_follows_the_login(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
