"""A damaged checkpoint in a run directory (a truncated shard, truncated or garbled metadata or loop state): `semid
rank fit` says so in one line naming the file and what to do, exits 2, and leaves the run directory exactly as it
was: the W&B run is not moved aside, no log is rewritten, no token cache or checkpoint is touched."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from semid.cli import main
from semid.core.run_lock import LOCK_NAME
from semid.rankers.config import load_rank_config
from semid.rankers.fit import fit
from tests.rankers.conftest import FAST

SETS = [o for o in FAST if not o.startswith("trainer.loggers")] + ["trainer.loggers=[csv,wandb]"]


@pytest.fixture(scope="module")
def one_day_run(signal_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hash_8k run stopped after its first day, with a CSV log and an offline W&B run beside its checkpoint."""
    out = tmp_path_factory.mktemp("damaged") / "run"
    fit(load_rank_config(representation="hash_8k", overrides=SETS), signal_corpus, out, max_train_days=1)
    assert any((out / "wandb").glob("offline-run-*"))
    return out


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content's digest (the lock file's holder pid changes with each process)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*")) if p.name != LOCK_NAME}


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garble(f: Path) -> None:
    data = f.read_bytes()
    f.write_bytes(data[:8] + bytes(b ^ 0x5A for b in data[8:64]) + data[64:])


def _resume(corpus: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(["rank", "fit", "--representation", "hash_8k", "--corpus", str(corpus), "--out", str(out),
               *[x for o in SETS for x in ("--set", o)], *extra])
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name, damage, problem", [
    ("__0_0.distcp", _truncate, "truncated: "),
    (".metadata", _truncate, "not readable checkpoint metadata: pickle data was truncated"),
    (".metadata", _garble, "not readable checkpoint metadata: "),
    ("lightning_state.pt", _truncate, "not a readable torch file: "),
    ("lightning_state.pt", _garble, "not a readable torch file: "),
])
def test_a_damaged_checkpoint_file_is_one_line_and_changes_nothing(one_day_run, signal_corpus, tmp_path, capsys,
                                                                   name, damage, problem) -> None:
    out = tmp_path / "run"
    shutil.copytree(one_day_run, out)
    ckpt = out / "checkpoints" / "last.ckpt"
    damage(ckpt / name)
    before = _tree(out)
    rc, err = _resume(signal_corpus, out, capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"semid: error: {ckpt / name}: the checkpoint is damaged ({problem}"), err[0]
    assert err[0].endswith(f"rerun with --no-resume to start over, or delete {ckpt}")
    assert _tree(out) == before


def test_no_resume_trains_over_a_damaged_checkpoint(one_day_run, signal_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(one_day_run, out)
    _truncate(out / "checkpoints" / "last.ckpt" / "__0_0.distcp")
    rc, err = _resume(signal_corpus, out, capsys, "--no-resume")
    assert rc == 0, err
    assert (out / "results.json").exists()


def test_bytes_garbled_inside_a_shard_are_one_line_at_load(one_day_run, signal_corpus, tmp_path, capsys) -> None:
    # the right length, so only deserialising finds it (read_checkpoint reads no tensors): still one line, exit 2,
    # and the checkpoint and the run's results are left as they were
    out = tmp_path / "run"
    shutil.copytree(one_day_run, out)
    ckpt = out / "checkpoints" / "last.ckpt"
    shard = ckpt / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)
    data[-64:] = bytes(b ^ 0x5A for b in data[-64:])
    shard.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    rc, err = _resume(signal_corpus, out, capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"semid: error: {ckpt}: the checkpoint is damaged (") and "--no-resume" in err[0]
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before and not (out / "results.json").exists()


def test_a_garbled_results_json_is_one_line(one_day_run, signal_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(one_day_run, out)
    (out / "results.json").write_text('{"fingerprint": ')
    before = _tree(out)
    rc, err = _resume(signal_corpus, out, capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"semid: error: {out / 'results.json'}: not valid JSON")
    assert "delete it, or rerun with --no-resume" in err[0] and _tree(out) == before


def test_a_truncated_dense_input_checkpoint_is_one_line(signal_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "dense"
    fit(load_rank_config(representation="dense", overrides=FAST), signal_corpus, out, max_train_days=1)
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()  # Lightning's own single-file checkpoint
    _truncate(ckpt)
    before = _tree(out)
    capsys.readouterr()
    rc = main(["rank", "fit", "--representation", "dense", "--corpus", str(signal_corpus), "--out", str(out),
               *[x for o in FAST for x in ("--set", o)]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"semid: error: {ckpt}: the checkpoint is damaged ("), err
    assert _tree(out) == before


def test_rank_eval_of_a_damaged_checkpoint_is_one_line(signal_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    fit(load_rank_config(representation="hash_8k", overrides=FAST), signal_corpus, out)
    ckpt = out / "checkpoints" / "last.ckpt"
    _truncate(ckpt / ".metadata")
    before = _tree(out)
    capsys.readouterr()
    assert main(["rank", "eval", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"semid: error: {ckpt / '.metadata'}: the checkpoint is damaged"), err
    assert err[0].endswith(f"retrain the run with `semid rank fit --no-resume --out {out}`")
    assert _tree(out) == before
