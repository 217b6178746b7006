"""Issue 32, the data gate's part: embeddings training cannot learn from (extreme magnitude, dimension 0), an
optional column on some days only, and corpus.json fields of the wrong type are one line, exit 2, from every
command that opens the corpus (`semid data validate` here)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semid.cli import main
from semid.datamodules.validate import MAX_ABS_EMBEDDING
from tests.datamodules.gate_corpus import DIM, N_ITEMS, day_file, set_column, write_corpus


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMID_CACHE_DIR", str(tmp_path / "cache"))


def _refused(c: Path, capsys: pytest.CaptureFixture[str]) -> str:
    before = sorted((p.relative_to(c), p.stat().st_mtime_ns) for p in c.rglob("*") if p.name != ".semid-validated.json")
    assert main(["data", "validate", str(c)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    after = sorted((p.relative_to(c), p.stat().st_mtime_ns) for p in c.rglob("*") if p.name != ".semid-validated.json")
    assert before == after  # the corpus is not changed
    return err


def _embeddings(c: Path, values: np.ndarray) -> None:
    dim = values.shape[1]
    set_column(c / "items.parquet", "embedding",
               pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1).astype(np.float32)), dim))


def test_extreme_but_finite_embeddings_are_refused(tmp_path: Path, capsys) -> None:
    c = write_corpus(tmp_path / "c")
    v = np.random.default_rng(0).normal(size=(N_ITEMS, DIM))
    v[5, 2] = 3e30  # finite in float32, yet it turns every RQ-VAE weight NaN (issue 32 class 1)
    _embeddings(c, v)
    err = _refused(c, capsys)
    assert "items.parquet: field 'embedding'" in err and "3e+30" in err and "(row 5)" in err and "rescale" in err


def test_embeddings_just_inside_the_limit_pass(tmp_path: Path) -> None:
    c = write_corpus(tmp_path / "c")
    v = np.random.default_rng(0).normal(size=(N_ITEMS, DIM))
    v[3, 0] = -MAX_ABS_EMBEDDING
    _embeddings(c, v)
    assert main(["data", "validate", str(c)]) == 0


def test_dimension_zero_is_refused(tmp_path: Path, capsys) -> None:
    c = write_corpus(tmp_path / "c")
    meta = json.loads((c / "corpus.json").read_text())
    meta["embedding_dim"] = 0
    (c / "corpus.json").write_text(json.dumps(meta))
    set_column(c / "items.parquet", "embedding", pa.array([[]] * N_ITEMS, pa.list_(pa.float32(), 0)))
    err = _refused(c, capsys)
    assert "field 'embedding': dimension 0" in err


def test_dimension_zero_in_variable_lists_is_refused(tmp_path: Path, capsys) -> None:
    c = write_corpus(tmp_path / "c")
    meta = json.loads((c / "corpus.json").read_text())
    del meta["embedding_dim"]
    (c / "corpus.json").write_text(json.dumps(meta))
    set_column(c / "items.parquet", "embedding", pa.array([[]] * N_ITEMS, pa.list_(pa.float32())))
    assert "field 'embedding': dimension 0" in _refused(c, capsys)


def test_an_optional_column_on_some_days_only_is_refused(tmp_path: Path, capsys) -> None:
    c = write_corpus(tmp_path / "c")
    f = day_file(c, 2)
    pq.write_table(pq.read_table(f).drop_columns(["engaged"]), f)
    err = _refused(c, capsys)
    assert "day=0002/part-0000.parquet: field 'engaged': column is missing here but present in" in err
    assert "every impression file or in none" in err


@pytest.mark.parametrize("field, value, said", [
    ("embedding_dim", "4", 'is a string ("4"), not an integer'),
    ("days", {"0": 1}, "is an object"),
    ("days", [0, "1", 2], "is a list with a non-integer ([0, \"1\", 2]), not a list of integers"),
    ("fingerprint", 12, "is an integer (12), not a string"),
    ("format_version", True, "is a boolean"),
    ("import", [1], "is a list ([1]), not an object"),
])
def test_a_corpus_json_field_of_the_wrong_type(tmp_path: Path, capsys, field: str, value: object, said: str) -> None:
    c = write_corpus(tmp_path / "c")
    meta = json.loads((c / "corpus.json").read_text())
    meta[field] = value
    (c / "corpus.json").write_text(json.dumps(meta))
    err = _refused(c, capsys)
    assert f"corpus.json: field '{field}': {said}" in err and "re-import / regenerate" in err
