"""One W&B policy: offline without a login, one run id per run directory, so a ranker fit or an RQ-VAE training
killed with -9 and resumed continues the same W&B run. Offline, the resumed attempt's run holds the whole
history, step for step what an uninterrupted run logs (replayed from the CSV log through the checkpoint), and
the killed attempt's run is set aside, so ``<out>/wandb`` holds one run. Read back with wandb's own reader of
the ``.wandb`` transaction log (``wandb leet inspect --json``)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
import pytest

from semid.core.loggers import wandb_mode, wandb_run_id
from semid.core.records import JsonObject
from tests.rankers.conftest import FAST

WANDB = str(Path(sys.executable).parent / "wandb")


def wandb_records(run_dir: Path) -> list[JsonObject]:
    """Every record of an offline run's ``.wandb`` log, as wandb's reader prints them (one JSON per line)."""
    out = subprocess.run([WANDB, "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wandb_history(run_dir: Path) -> list[JsonObject]:
    """The run's history rows in order, each with wandb's own ``_step``."""
    return [{**r["history"]["item"], "_step": r["history"]["step"].get("num", 0)}
            for r in wandb_records(run_dir) if r["type"] == "history"]


def _metrics(rows: list[JsonObject]) -> list[JsonObject]:
    """Rows without wandb's bookkeeping (wall-clock times, its own step counter)."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def _child_env(tmp_path: Path) -> dict[str, str]:
    # no WANDB_* of this process: an earlier in-process W&B run leaves its service address (WANDB_SERVICE)
    # there, and a child told to talk to a finished service fails
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), SEMID_PROGRESS="0", OMP_NUM_THREADS="1")  # no ~/.netrc: offline by policy
    return env


def _one_run(out: Path, run_id: str) -> Path:
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(f"-{run_id}"), runs
    return runs[0]


def _kill_then_resume(cmd: list[str], env: dict[str, str], step: int) -> None:
    killed = subprocess.run(cmd, env={**env, "SEMID_TEST_KILL_AT_STEP": str(step)}, capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout, done.stdout[-2000:]


@pytest.mark.slow  # three short fits in subprocesses
def test_a_killed_and_resumed_fit_continues_one_wandb_run(signal_corpus: Path, tmp_path: Path) -> None:
    # a row every 5 steps (20 steps a day): the killed attempt logs 6 rows, the checkpoint at step 20 covers 4
    sets = [o for o in FAST if not o.startswith("trainer.loggers")] + ["trainer.loggers=[csv,wandb]",
                                                                      "trainer.log_every_n_steps=5"]

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", "hash_8k", "--corpus",
                str(signal_corpus), "--out", str(out)] + [x for o in sets for x in ("--set", o)]

    env = _child_env(tmp_path)
    out, ref = tmp_path / "run", tmp_path / "ref"
    _kill_then_resume(cmd(out), env, 30)  # in day 1, after day 0's checkpoint
    subprocess.run(cmd(ref), env=env, capture_output=True, timeout=600, check=True)  # uninterrupted

    run = _one_run(out, wandb_run_id(out))
    assert [p.name.endswith(f"-{wandb_run_id(out)}") for p in (out / "wandb" / "superseded").iterdir()] == [True]
    rows, ref_rows = wandb_history(run), wandb_history(_one_run(ref, wandb_run_id(ref)))
    steps = [r["trainer/global_step"] for r in rows]
    assert steps[:4] == [4, 9, 14, 19] and 24 in steps  # the rows through the checkpoint, then the resumed ones
    assert [r["_step"] for r in rows] == list(range(len(rows)))  # W&B's own step continues too
    assert _metrics(rows) == _metrics(ref_rows)  # every step, every value of the uninterrupted run
    summary = json.loads(subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(run)],
                                        capture_output=True, text=True, check=True).stdout)["summary"]
    res = json.loads((out / "results.json").read_text())
    assert abs(summary["eval/ctr_auc/overall"] - res["metrics"]["ctr"]["overall"]["auc"]) < 1e-9


@pytest.mark.slow  # three short RQ-VAE trainings in subprocesses
def test_a_killed_and_resumed_rqvae_training_continues_one_wandb_run(tiny_corpus: Path, tmp_path: Path) -> None:
    # 120 steps, a row every 10, a checkpoint every 25: killed at step 60, the rerun resumes from step 50
    sets = ["train.steps=120", "train.holdout_items=100", "run.checkpoint_every_n_steps=25", "run.threads=1",
            "run.log_every_n_steps=10"]

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "semid.cli", "sids", "train", "--corpus", str(tiny_corpus), "--config", "tiny",
                "--logger", "wandb", "--out", str(out), *[x for s in sets for x in ("--set", s)]]

    env = _child_env(tmp_path)
    out, ref = tmp_path / "run", tmp_path / "ref"
    _kill_then_resume(cmd(out), env, 60)
    subprocess.run(cmd(ref), env=env, capture_output=True, timeout=600, check=True)

    run = _one_run(out, wandb_run_id(out))  # the id of the final directory, though it trained in run.partial/
    rows, ref_rows = _metrics(wandb_history(run)), _metrics(wandb_history(_one_run(ref, wandb_run_id(ref))))
    with open(out / "logs" / "metrics.csv", newline="") as f:
        csv_rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    # W&B holds the whole continued CSV log, row for row (Lightning does not repeat the checkpoint step's own
    # training row and validation after a resume: at most 2 rows fewer than the uninterrupted run)
    as_csv = [{**{k: v for k, v in r.items() if k != "trainer/global_step"}, "step": r["trainer/global_step"]}
              for r in rows]
    assert as_csv == csv_rows
    steps = [r["step"] for r in csv_rows]
    assert min(steps) == 9 and {39, 59, 69, 119} <= set(steps)  # before the checkpoint at 50, after it, the end
    assert all(r in ref_rows for r in rows) and len(rows) >= len(ref_rows) - 2


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
