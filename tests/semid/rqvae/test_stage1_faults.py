"""Stage 1's faults through the CLI (issue 32): a diverging training run and damaged artifacts (a quantizer export
with NaN weights or truncated, SID-table metadata that is not JSON or lacks keys, a truncated table) are one line
naming the file or the step and the fix, exit 2, and leave nothing behind."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from semid.cli import main
from semid.datamodules.corpus import Corpus
from semid.rqvae.sid_table import _META, SidTable, write_sid_table


def _run(*argv: object) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_diverging_training_is_exit_2_and_leaves_nothing(tiny_corpus: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """Embeddings of magnitude 1e30 (the data gate may refuse them in the file: here they are scaled as the
    trainer reads them) make every RQ-VAE weight NaN; `sids train` stops at the step and exits 2."""
    read = Corpus.read_embeddings
    monkeypatch.setattr(Corpus, "read_embeddings",
                        lambda self, rows, **kw: read(self, rows, **kw) * np.float32(1e30))
    out = tmp_path / "run"
    assert _run("sids", "train", "--corpus", tiny_corpus, "--config", "tiny", "--out", out,
                "--set", "train.steps=20", "--set", "train.holdout_items=50") == 2
    err = _one_line(capsys)
    assert "RQ-VAE training diverged at step 1 of 20: the loss is" in err and "normalise them" in err
    assert not out.exists() and not (tmp_path / "run.partial").exists()


@pytest.fixture()
def export(tiny_model, tmp_path: Path) -> Path:
    p = tmp_path / "model" / "rqvae.pt"
    p.parent.mkdir()
    shutil.copy(tiny_model.out / "rqvae.pt", p)
    return p


def test_assign_refuses_nonfinite_weights(export: Path, tiny_corpus: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    payload = torch.load(export, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name][0] = float("nan")
    torch.save(payload, export)
    out = tmp_path / "sids.parquet"
    assert _run("sids", "assign", "--model", export, "--corpus", tiny_corpus, "--out", out) == 2
    err = _one_line(capsys)
    assert f"{export}: weights are not finite (NaN or inf in {name})" in err and "lower train.lr" in err
    assert not out.exists() and not (tmp_path / "sids.parquet.partial").exists()


def test_truncated_export_is_one_line(export: Path, tiny_corpus: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    data = export.read_bytes()
    export.write_bytes(data[:len(data) // 2])
    assert _run("sids", "assign", "--model", export, "--corpus", tiny_corpus, "--out", tmp_path / "s.parquet") == 2
    assert f"{export}: not a readable quantizer export, truncated or damaged" in _one_line(capsys)


def _table(path: Path) -> Path:
    t = SidTable(np.array([1, 2, 3]), np.array([[0, 1], [1, 0], [1, 1]], np.int32), 4, "model-fp")
    return write_sid_table(t, path)


def _with_meta(path: Path, raw: bytes) -> None:
    t = pq.read_table(path)
    pq.write_table(t.replace_schema_metadata({_META: raw}), path)


@pytest.mark.parametrize("raw, problem", [
    (b"{not json", "its semid metadata is not JSON"),
    (b"[1, 2]", "its semid metadata is a JSON list, not a mapping"),
    (json.dumps({"levels": 2, "codebook_size": 4}).encode(), "its semid metadata lacks rqvae_fingerprint, fingerprint"),
    (json.dumps({"levels": "2", "codebook_size": 4, "rqvae_fingerprint": "m", "fingerprint": "f"}).encode(),
     "its semid metadata has levels='2', not a positive integer"),
])
def test_damaged_table_metadata(tmp_path: Path, raw: bytes, problem: str, capsys: pytest.CaptureFixture) -> None:
    path = _table(tmp_path / "sids.parquet")
    _with_meta(path, raw)
    before = path.read_bytes()
    assert _run("sids", "compare", path, path) == 2
    err = _one_line(capsys)
    assert f"{path}: {problem}" in err and "re-create it with `semid sids assign --overwrite`" in err
    assert path.read_bytes() == before


def test_truncated_table(tmp_path: Path, tiny_model, tiny_corpus: Path, capsys: pytest.CaptureFixture) -> None:
    path = _table(tmp_path / "sids.parquet")
    path.write_bytes(path.read_bytes()[:100])
    before = path.read_bytes()
    # --update reads the table before any work: refused, the file as it was, no work directory
    assert _run("sids", "assign", "--model", tiny_model.out, "--corpus", tiny_corpus, "--out", path, "--update") == 2
    assert f"{path}: not a readable Parquet file, truncated or damaged" in _one_line(capsys)
    assert path.read_bytes() == before and not (tmp_path / "sids.parquet.partial").exists()
