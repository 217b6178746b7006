"""Every bad input of the data contract: one line naming file and field, exit code 2, nothing half-written."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semid.datamodules.corpus import CorpusWriter, Corpus
from semid.datamodules.validate import validate_corpus
from semid.cli import main
from semid.core.errors import DataError


def _write_corpus(out: Path, n_items: int = 20, days: int = 3, dim: int = 4) -> Path:
    rng = np.random.default_rng(0)
    with CorpusWriter(out, dim) as w:
        w.write_items(np.arange(n_items) + 10, rng.normal(size=(n_items, dim)), np.zeros(n_items, np.int32))
        for d in range(days):
            m = 30
            w.write_impressions(d, {"day": np.full(m, d), "user_id": rng.integers(0, 5, m),
                                    "watch_item_id": np.where(rng.random(m) < 0.2, -1, rng.integers(10, 10 + n_items, m)),
                                    "item_id": rng.integers(10, 10 + n_items, m), "click": rng.integers(0, 2, m),
                                    "engaged": np.zeros(m)})
        w.close({"source": "test"})
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return _write_corpus(tmp_path / "c")


def _items(corpus: Path) -> pa.Table:
    return pq.read_table(corpus / "items.parquet")


def _rewrite_items(corpus: Path, table: pa.Table) -> None:
    pq.write_table(table, corpus / "items.parquet")


def _day_file(corpus: Path, day: int = 1) -> Path:
    return next((corpus / "impressions" / f"day={day:04d}").glob("*.parquet"))


def _set_col(t: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    return t.set_column(t.column_names.index(name), name, arr)


def test_valid_corpus_passes(corpus):
    r = validate_corpus(corpus, deep_fingerprint=True)
    assert (r.n_items, r.dim, r.days, r.n_impressions) == (20, 4, [0, 1, 2], 90)


def _float_list(rows):
    return pa.array(rows, pa.list_(pa.float32()))


CASES = {
    "missing items file": (lambda c: (c / "items.parquet").unlink(), "items.parquet: file is missing"),
    "not parquet": (lambda c: (c / "items.parquet").write_text("hello"), "not a readable Parquet file"),
    "string ids": (lambda c: _rewrite_items(c, _set_col(_items(c), "item_id", pa.array(["x"] * 20))),
                   "field 'item_id': string ids that are not integers"),
    "ragged embeddings": (lambda c: _rewrite_items(c, _set_col(_items(c), "embedding", _float_list(
        [[0.0] * 4] * 3 + [[0.0] * 3] + [[0.0] * 4] * 16))), "field 'embedding': row 3 has dimension 3"),
    "wrong dimension": (lambda c: _rewrite_items(c, _set_col(_items(c), "embedding", _float_list([[0.0] * 5] * 20))),
                        "dimension 5 does not match the corpus dimension 4"),
    "nan embedding": (lambda c: _rewrite_items(c, _set_col(_items(c), "embedding", _float_list(
        [[0.0] * 4] * 5 + [[float("nan")] * 4] + [[0.0] * 4] * 14))), "contain NaN or inf (first at row 5)"),
    "duplicate ids": (lambda c: _rewrite_items(c, _set_col(_items(c), "item_id", pa.array([10] * 2 + list(range(11, 29)),
                                                                                          pa.int64()))),
                      "field 'item_id': 1 duplicate id(s), e.g. 10"),
    "negative ids": (lambda c: _rewrite_items(c, _set_col(_items(c), "item_id", pa.array(range(-1, 19), pa.int64()))),
                     "field 'item_id': 1 negative id(s)"),
    "unknown items": (lambda c: pq.write_table(_set_col(pq.read_table(_day_file(c)), "item_id",
                                                        pa.array([999] * 30, pa.int64())), _day_file(c)),
                      "field 'item_id': 1 id(s) not in items.parquet, e.g. 999"),
    "empty day": (lambda c: [p.unlink() for p in (c / "impressions" / "day=0001").glob("*")],
                  "day=0001: day has no Parquet files"),
    "day gap": (lambda c: shutil.rmtree(c / "impressions" / "day=0001"), "field 'day': days 1 are missing"),
    "missing column": (lambda c: pq.write_table(pq.read_table(_day_file(c)).drop(["click"]), _day_file(c)),
                       "field 'click': column is missing"),
    "copied day file": (lambda c: shutil.copy(_day_file(c), _day_file(c).with_name("part-0001.parquet")),
                        "holds the same 30 impressions as part-0000.parquet (the day was written twice?)"),
    "day rows written twice": (lambda c: pq.write_table(pa.concat_tables([pq.read_table(_day_file(c))] * 2),
                                                        _day_file(c)), "every impression occurs exactly 2 times"),
    "float64 beyond float32 range": (lambda c: _rewrite_items(c, _set_col(_items(c), "embedding", pa.array(
        [[1e300] * 4] * 20, pa.list_(pa.float64())))), "field 'embedding': float64 values beyond float32 range"),
    "fractional float ids": (lambda c: _rewrite_items(c, _set_col(_items(c), "item_id", pa.array(
        [i + 0.5 for i in range(10, 30)], pa.float64()))), "field 'item_id'"),
    "impression before first_day": (lambda c: _rewrite_items(c, _set_col(_items(c), "first_day",
                                                                         pa.array([2] * 20, pa.int32()))),
                                    "impression(s) of items before their first_day"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2(corpus, case, capsys):
    break_it, expected = CASES[case]
    break_it(corpus)
    with pytest.raises(DataError) as err:
        validate_corpus(corpus)
    assert expected in str(err.value)
    capsys.readouterr()
    assert main(["data", "validate", str(corpus)]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semid: error: ") and expected in lines[0]
    assert "Traceback" not in out.err


def test_lossless_conversions_are_accepted(corpus):
    t = _items(corpus)
    t = _set_col(t, "item_id", pa.array([str(i) for i in range(10, 30)]))
    emb = np.random.default_rng(0).normal(size=(20, 4))  # float64 values that differ (identical ones are refused)
    t = _set_col(t, "embedding", pa.array(emb.tolist(), pa.list_(pa.float64())))
    _rewrite_items(corpus, t)
    items = Corpus(corpus).read_items()
    assert items.item_id.dtype == np.int64 and items.embedding.dtype == np.float32
    assert validate_corpus(corpus).n_items == 20


def test_repeated_impressions_are_kept_and_counted(corpus, capsys):
    t = pq.read_table(_day_file(corpus))
    pq.write_table(pa.concat_tables([t, t.slice(0, 3)]), _day_file(corpus))  # a user saw 3 items twice
    r = validate_corpus(corpus)
    assert r.n_impressions == 93 and r.repeated_impressions >= 3
    assert main(["data", "validate", str(corpus)]) == 0
    assert "repeat an earlier one of the same day" in capsys.readouterr().out


def test_fingerprint_detects_changed_files(corpus):
    pq.write_table(pq.read_table(_day_file(corpus)).slice(0, 10), _day_file(corpus))
    validate_corpus(corpus)  # still a valid corpus ...
    with pytest.raises(DataError, match="fingerprint"):
        validate_corpus(corpus, deep_fingerprint=True)  # ... but not the one corpus.json describes


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(RuntimeError):
        with CorpusWriter(out, 4) as w:
            w.write_items(np.arange(3), np.zeros((3, 4)), np.zeros(3))
            raise RuntimeError("disk full")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_not_overwritten_without_flag(corpus, capsys):
    assert main(["data", "synth", "--preset", "tiny", "--out", str(corpus)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert validate_corpus(corpus).n_items == 20  # untouched
