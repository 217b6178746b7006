"""`kill -9` during `semid sids train` / `semid sids assign`, then the same command again: it resumes and
ends with exactly what an uninterrupted run writes.

The kills are deterministic: the test hooks ``SEMID_TEST_KILL_AT_STEP`` and ``SEMID_TEST_KILL_AFTER_CHUNKS``
make the subprocess SIGKILL itself at a known step / chunk, so nothing races a busy machine.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from semid.datamodules import Corpus
from semid.cli import main
from semid.core.errors import SemidError
from semid.rqvae.config import load_rqvae_config
from semid.rqvae.partial import claim_partial
from semid.rqvae.sid_table import read_sid_table

_ENV = {**os.environ, "SEMID_PROGRESS": "0", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
# 120 steps, a checkpoint every 25: killed at step 60, the rerun resumes from step 50
_SET = ["train.steps=120", "train.holdout_items=100", "run.checkpoint_every_n_steps=25", "run.threads=1"]


def _run(*argv: object) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


def _killed(argv: list[str], hook: str, value: int) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "semid.cli", *argv], capture_output=True, text=True, timeout=300,
                       env={**_ENV, hook: str(value)})
    assert r.returncode == -signal.SIGKILL, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def _train_argv(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["sids", "train", "--corpus", str(corpus), "--config", "tiny", "--out", str(out),
            *[x for s in [*_SET, *extra] for x in ("--set", s)]]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "rqvae.pt", weights_only=True)["state_dict"]


def _health(run: Path) -> dict:
    h = json.loads((run / "health.json").read_text())
    h["train"].pop("fit_seconds")  # wall time: differs between any two runs
    return h


def _log_rows(run: Path) -> list[tuple]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [tuple(sorted((k, v) for k, v in row.items() if v != "")) for row in csv.DictReader(f)]


@pytest.mark.slow  # a subprocess (~4 s of imports on 2 cores) and two short trainings
def test_killed_training_resumes_to_the_same_model(tiny_corpus: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    _killed(_train_argv(tiny_corpus, out), "SEMID_TEST_KILL_AT_STEP", 60)
    partial = tmp_path / "run.partial"
    assert not out.exists() and (partial / "checkpoints" / "last.ckpt").exists()

    capsys.readouterr()
    assert _run(*_train_argv(tiny_corpus, out)) == 0  # the same command again
    said = capsys.readouterr().out
    assert re.search(rf"resuming {re.escape(str(partial))} from step 50 of 120", said), said
    ref = tmp_path / "ref"
    assert _run(*_train_argv(tiny_corpus, ref)) == 0  # uninterrupted
    assert "resuming" not in capsys.readouterr().out

    a, b = _weights(out), _weights(ref)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical
    assert _health(out) == _health(ref)
    assert sum(_health(out)["train"]["dead_code_resets_per_level"]) > 0  # dead-code resets were part of the run
    # the log continues across the resume: every row of the interrupted attempt up to its checkpoint is kept
    # (only the checkpoint step's own training row and validation are not repeated by Lightning)
    rows, ref_rows = _log_rows(out), _log_rows(ref)
    assert set(rows) <= set(ref_rows) and len(rows) >= len(ref_rows) - 2
    assert {dict(r)["step"] for r in rows} >= {"9", "39", "60", "119"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref", "run"]  # no work directory, no temporaries
    assert not (out / "partial.json").exists()


def test_interrupted_training_of_another_config_is_refused(tiny_corpus: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    import semid.rqvae.frozen as frozen
    import semid.rqvae.train as train

    out = tmp_path / "run"
    cfg = load_rqvae_config("tiny", ["train.steps=20", "train.holdout_items=0", "run.checkpoint_every_n_steps=10",
                                     "run.threads=1"])

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("crashed while exporting")

    with monkeypatch.context() as m:  # a crash after training: checkpoints at steps 10 and 20 are left
        m.setattr(frozen, "export_frozen", crash)  # Quantizer.save writes through it
        with pytest.raises(RuntimeError, match="crashed"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train.train_rqvae(tiny_corpus, cfg, out, quiet=True)
    partial = tmp_path / "run.partial"
    assert not out.exists() and (partial / "checkpoints" / "last.ckpt").exists()

    # another config: one line naming the work directory and the fix, exit 2; the interrupted run is kept
    def other_config(run: Path, *extra: str) -> int:
        return _run("sids", "train", "--corpus", tiny_corpus, "--config", "tiny", "--out", run,
                    "--set", "train.steps=30", "--set", "train.holdout_items=0", *extra)

    capsys.readouterr()
    assert other_config(out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(partial) in err[0] and "--overwrite" in err[0], err
    assert (partial / "checkpoints" / "last.ckpt").exists()

    # the same config resumes, here from the final checkpoint, and ends where a fresh run ends
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = train.train_rqvae(tiny_corpus, cfg, out, quiet=True)
        fresh = train.train_rqvae(tiny_corpus, cfg, tmp_path / "fresh", quiet=True)
    assert r.resumed_from_step == 20 and fresh.resumed_from_step is None
    assert (out / "rqvae.pt").exists() and not partial.exists()
    assert all(torch.equal(v, _weights(tmp_path / "fresh")[k]) for k, v in _weights(out).items())
    assert _health(out)["train"] == _health(tmp_path / "fresh")["train"]

    # --overwrite discards an interrupted run of another config and starts over
    with monkeypatch.context() as m:
        m.setattr(frozen, "export_frozen", crash)  # Quantizer.save writes through it
        with pytest.raises(RuntimeError, match="crashed"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train.train_rqvae(tiny_corpus, cfg, tmp_path / "b", quiet=True)
    capsys.readouterr()
    assert other_config(tmp_path / "b", "--overwrite") == 0
    assert "resuming" not in capsys.readouterr().out
    assert json.loads((tmp_path / "b" / "health.json").read_text())["train"]["steps"] == 30


def test_killed_assignment_reuses_finished_chunks(tiny_model, tiny_corpus: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sids.parquet"
    argv = ["sids", "assign", "--model", str(tiny_model.out), "--corpus", str(tiny_corpus), "--out", str(out),
            "--chunk-items", "200", "--batch-size", "64"]
    _killed(argv, "SEMID_TEST_KILL_AFTER_CHUNKS", 2)
    partial = tmp_path / "sids.parquet.partial"
    assert not out.exists() and sorted(p.name for p in partial.glob("codes-*.npy")) == \
        ["codes-000000.npy", "codes-000001.npy"]

    capsys.readouterr()
    assert _run(*argv) == 0  # the same command again
    assert "reused 2 of 5 chunks" in capsys.readouterr().out
    ref = tmp_path / "ref.parquet"
    assert _run("sids", "assign", "--model", tiny_model.out, "--corpus", tiny_corpus, "--out", ref) == 0
    a, b = read_sid_table(out), read_sid_table(ref)
    assert len(a) == 880 and a.fingerprint == b.fingerprint
    assert np.array_equal(a.item_id, b.item_id) and np.array_equal(a.codes, b.codes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.parquet", "sids.parquet"]


def test_assignment_discards_chunks_of_other_inputs(tiny_model, other_model, tiny_corpus: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import semid.rqvae.assign as assign

    out = tmp_path / "sids.parquet"
    with monkeypatch.context() as m:  # a crash after encoding: every chunk of `other_model` is saved
        m.setattr(assign, "write_sid_table", lambda *a: (_ for _ in ()).throw(RuntimeError("crashed")))
        with pytest.raises(RuntimeError, match="crashed"):
            assign.assign_sids(other_model.out, tiny_corpus, out, chunk_items=300)
    assert len(list((tmp_path / "sids.parquet.partial").glob("codes-*.npy"))) == 3
    r = assign.assign_sids(tiny_model.out, tiny_corpus, out, chunk_items=300)
    assert (r.chunks, r.reused_chunks) == (3, 0)  # another model's codes are never reused
    assert np.array_equal(r.table.codes, tiny_model.model.encode(Corpus(tiny_corpus).read_items().embedding))


def test_a_work_directory_is_used_by_one_command_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with claim_partial(out, "fp1", {}, keep=True, discard_other=False, command="semid sids train") as part:
        assert not part.resumed
        (part.path / "work.txt").write_text("x")
        with pytest.raises(SemidError, match="in use by another running `semid sids train`"):
            with claim_partial(out, "fp1", {}, keep=True, discard_other=False, command="semid sids train"):
                pass
    with claim_partial(out, "fp1", {}, keep=True, discard_other=False, command="semid sids train") as part:
        assert part.resumed and (part.path / "work.txt").exists()
    with claim_partial(out, "fp2", {}, keep=True, discard_other=True, command="semid sids train") as part:
        assert not part.resumed and not (part.path / "work.txt").exists()  # other inputs: discarded
    (tmp_path / "mine.partial").mkdir()
    (tmp_path / "mine.partial" / "notes.txt").write_text("not semid's")
    with pytest.raises(SemidError, match="not made by"):
        with claim_partial(tmp_path / "mine", "fp", {}, keep=True, discard_other=True, command="semid sids assign"):
            pass
    assert (tmp_path / "mine.partial" / "notes.txt").exists()
