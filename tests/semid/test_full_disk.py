"""A write that runs out of room: one line, exit code 2, no traceback, and no half-written artifact.

The disk is "full" through the file-size limit (RLIMIT_FSIZE) of the child process: the kernel then fails
the write that crosses it (EFBIG) exactly where a full disk fails with ENOSPC. This needs no root and no
special file system, so it runs wherever the tests run.
"""
from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from semid.core.artifacts import atomic_path
from semid.core.errors import SemidError, out_of_room

pytestmark = pytest.mark.slow

_ENV = {**os.environ, "SEMID_PROGRESS": "0", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _run_with_file_limit(limit_bytes: int, *args: str) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "semid.cli", *args], preexec_fn=limit, capture_output=True,
                          text=True, env=_ENV, timeout=600)


def _assert_one_line_no_room(r: subprocess.CompletedProcess, target: Path) -> None:
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("semid: error:")]
    assert len(errors) == 1 and "cannot write" in errors[0] and "nothing half-written was kept" in errors[0], errors
    assert not target.exists(), f"{target} exists after a failed write"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("disk") / "tiny"
    r = subprocess.run([sys.executable, "-m", "semid.cli", "data", "synth", "--preset", "tiny", "--out", str(out)],
                       capture_output=True, text=True, env=_ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def test_corpus_generation(tmp_path):
    out = tmp_path / "c"
    _assert_one_line_no_room(_run_with_file_limit(300_000, "data", "synth", "--preset", "tiny", "--out", str(out)),
                             out)
    assert [p.name for p in tmp_path.iterdir()] == []  # not even the temporary directory


def test_rqvae_training(corpus, tmp_path):
    out = tmp_path / "rq"
    r = _run_with_file_limit(20_000, "sids", "train", "--corpus", str(corpus), "--config", "tiny", "--out", str(out),
                             "--threads", "1", "--set", "train.steps=20")
    _assert_one_line_no_room(r, out)


def test_token_cache(corpus, tmp_path):
    out = tmp_path / "hash.npz"
    r = _run_with_file_limit(2_000, "tokens", "build", "--representation", "hash_8k", "--corpus", str(corpus),
                             "--out", str(out))
    _assert_one_line_no_room(r, out)
    assert list(tmp_path.iterdir()) == []


def test_ranker_checkpoint(corpus, tmp_path):
    out = tmp_path / "rank"
    r = _run_with_file_limit(1_500_000, "rank", "fit", "--representation", "hash_8k", "--corpus", str(corpus), "--out",
                             str(out), "--set", "trainer.threads=1", "--set", "trainer.loggers=[csv]")
    _assert_one_line_no_room(r, out / "results.json")
    assert f"{out / 'checkpoints' / 'last.ckpt'}: cannot write" in r.stderr  # torch's own message names no file
    assert not (out / "checkpoints" / "last.ckpt").exists()


def test_no_room_is_recognised_through_wrappers(tmp_path):
    enospc = OSError(errno.ENOSPC, "No space left on device", "/data/x.parquet")
    err = out_of_room(enospc)
    assert isinstance(err, SemidError) and str(err).startswith("/data/x.parquet: cannot write (No space left")
    try:
        try:
            raise enospc
        except OSError as e:
            raise RuntimeError("checkpoint failed") from e
    except RuntimeError as wrapped:
        assert out_of_room(wrapped) is not None
    assert out_of_room(ValueError("bad value")) is None
    assert out_of_room(OSError(errno.ENOENT, "No such file or directory")) is None

    target = tmp_path / "artifact.json"
    with pytest.raises(SemidError, match="artifact.json: cannot write"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []
