"""A ranker fit that diverges stops with one line naming the day, the step and a fix (exit 2 from the CLI), never
finishes "successfully", never writes results.json and never checkpoints the diverged day."""
from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

import semid.rankers.fit as fit_module
from semid.cli import main
from semid.core.errors import SemidError
from semid.rankers.checkpoints import read_checkpoint
from semid.rankers.config import load_rank_config
from semid.rankers.divergence import first_nonfinite
from semid.rankers.fit import fit
from tests.rankers.conftest import FAST


def _args(corpus: Path, out: Path, representation: str, *sets: str) -> list[str]:
    return ["rank", "fit", "--representation", representation, "--corpus", str(corpus), "--out", str(out)] + \
        [x for o in [*FAST, *sets] for x in ("--set", o)]


@pytest.mark.parametrize("representation, lr", [("hash_8k", "optim.dense_lr"), ("hash_8k", "optim.table.lr"),
                                                ("dense", "optim.dense_lr")])
def test_a_huge_learning_rate_stops_the_cli_with_one_line(signal_corpus, tmp_path, capsys, representation, lr) -> None:
    # YAML reads 1e30 as a string: 1.0e+30 is its float spelling
    out = tmp_path / "run"
    assert main(_args(signal_corpus, out, representation, f"{lr}=1.0e+30")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"semid: error: rank fit {out}: training diverged on day 0, step "), err
    assert "the training loss is nan" in err[0] and f"--set {lr}=1e+29 (now 1e+30)" in err[0]
    assert ("optim.table.lr" in err[0]) == (representation != "dense")  # Dense Input has no tables to blame
    assert not out.exists()  # the fit created it: nothing left behind, no results.json


class _PoisonUnusedRow(L.Callback):
    """On the last step of training day ``day``, writes NaN into a table row that step does not look up: the loss
    stays finite, only the day-end weight check can see it."""

    def __init__(self, day_index: int) -> None:
        self.day_index = day_index

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.current_epoch != self.day_index or batch_idx != trainer.num_training_batches - 1:
            return
        table = dict(pl_module.named_parameters())["model.ebc.embedding_bags.hash_8k.weight"]
        used = set(batch.kjt.values().tolist())
        row = next(r for r in range(table.shape[0]) if r not in used)
        with torch.no_grad():
            table[row] = float("nan")


def test_a_nan_table_row_stops_the_day_before_its_checkpoint(signal_corpus, tmp_path, monkeypatch) -> None:
    cfg = load_rank_config(representation="hash_8k", overrides=FAST)
    out = tmp_path / "run"
    fit(cfg, signal_corpus, out, max_train_days=1)  # day 0's checkpoint
    day0 = read_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"]
    monkeypatch.setattr(fit_module, "kill_hooks", lambda: [_PoisonUnusedRow(day_index=1)])
    with pytest.raises(SemidError) as e:
        fit(cfg, signal_corpus, out)
    msg = str(e.value)
    assert f"training diverged on day 1, step {day0} of the day (global step {2 * day0})" in msg, msg
    assert "weight model.ebc.embedding_bags.hash_8k.weight holds NaN or infinite values" in msg
    assert "--set optim.table.lr=0.005 (now 0.05)" in msg
    # the directory existed before this attempt: it stays, with day 0's checkpoint and no results
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == day0
    assert not (out / "results.json").exists()


def test_first_nonfinite_names_the_parameter() -> None:
    m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    assert first_nonfinite(m) is None
    with torch.no_grad():
        m[1].weight[0, 1] = math.inf
    assert first_nonfinite(m) == "1.weight"


def test_two_processes_stop_together_with_one_line(signal_corpus, tmp_path) -> None:
    # every rank must stop at the same step (a rank that stopped alone would leave the other waiting in a collective)
    # and the run says it once, from rank 0
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "semid.cli", *_args(signal_corpus, out, "hash_8k", "trainer.devices=2",
                                                     "sharding.sharding_types=[table_wise]", "optim.dense_lr=1.0e+30")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("semid:")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert "training diverged on day 0" in lines[0] and "Traceback" not in done.stderr
    assert not out.exists()
