"""impressions/ holds day=NNNN partitions only: discovery with pyarrow.dataset, and every stray entry a user error."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semid.datamodules.corpus import Corpus, CorpusWriter
from semid.datamodules.validate import validate_corpus
from semid.cli import main
from semid.core.errors import DataError

FIX = "(name day directories day=NNNN, or move it out of impressions/)"


def _write_corpus(out: Path, *, days: int = 3, parts: int = 1, n_items: int = 20, dim: int = 4) -> Path:
    rng = np.random.default_rng(1)
    with CorpusWriter(out, dim) as w:
        w.write_items(np.arange(n_items) + 10, rng.normal(size=(n_items, dim)), np.zeros(n_items, np.int32))
        for d in range(days):
            for _ in range(parts):
                m = 25
                w.write_impressions(d, {"day": np.full(m, d), "user_id": rng.integers(0, 5, m),
                                        "watch_item_id": np.where(rng.random(m) < 0.3, -1,
                                                                  rng.integers(10, 10 + n_items, m)),
                                        "item_id": rng.integers(10, 10 + n_items, m),
                                        "click": rng.integers(0, 2, m), "engaged": np.zeros(m)})
        w.close({"source": "test"})
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return _write_corpus(tmp_path / "c")


def _copy_day(name: str):
    return lambda imp: shutil.copytree(imp / "day=0001", imp / name)


STRAYS = {  # entry under impressions/ -> how to make it
    "day=abc": _copy_day("day=abc"),
    "tmp": lambda imp: (imp / "tmp").mkdir(),  # an empty directory too: not silently skipped
    "day=0003.bak": _copy_day("day=0003.bak"),
    "notes.txt": lambda imp: (imp / "notes.txt").write_text("to do"),
    "day=0003": lambda imp: shutil.copy(next((imp / "day=0001").glob("*.parquet")), imp / "day=0003"),  # a file
    "day=": lambda imp: (imp / "day=").mkdir(),
    "day=-1": lambda imp: (imp / "day=-1").mkdir(),
    "part-0000.parquet": lambda imp: shutil.copy(next((imp / "day=0001").glob("*.parquet")), imp),
}


@pytest.mark.parametrize("name", sorted(STRAYS))
def test_stray_entry_under_impressions_is_one_line_and_exit_2(corpus, name, capsys):
    STRAYS[name](corpus / "impressions")
    expected = f"{corpus}/impressions/{name}: not a day partition {FIX}"
    with pytest.raises(DataError) as err:
        Corpus(corpus).days()
    assert str(err.value) == expected
    capsys.readouterr()
    assert main(["data", "validate", str(corpus)]) == 2
    out = capsys.readouterr()
    assert out.err.splitlines() == [f"semid: error: {expected}"]
    assert "Traceback" not in out.err


def test_stray_entry_through_the_command_line(corpus):
    (corpus / "impressions" / "tmp").mkdir()
    r = subprocess.run([sys.executable, "-m", "semid.cli", "data", "validate", str(corpus)],
                       capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"semid: error: {corpus}/impressions/tmp: not a day partition {FIX}"]


def test_two_directories_of_one_day_are_refused(corpus, capsys):
    shutil.copytree(corpus / "impressions" / "day=0001", corpus / "impressions" / "day=1")
    assert main(["data", "validate", str(corpus)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"semid: error: {corpus}/impressions/day=1: a second partition of day 1 (next to day=0001) "
                     "(keep one directory per day)"]


def test_hidden_entries_are_ignored(corpus, capsys):
    imp = corpus / "impressions"
    shutil.copytree(imp / "day=0001", imp / ".day=0003.tmp-1a2b3c4d")  # an atomic write's temporary sibling
    (imp / ".DS_Store").write_text("")
    day_file = next((imp / "day=0001").glob("*.parquet"))
    shutil.copy(day_file, day_file.with_name(".part-0000.parquet.tmp-1a2b3c4d.parquet"))  # not a second copy
    assert Corpus(corpus).day_files() == {d: [imp / f"day={d:04d}" / "part-0000.parquet"] for d in range(3)}
    assert validate_corpus(corpus).days == [0, 1, 2]
    assert main(["data", "validate", str(corpus)]) == 0


def test_day_files_lists_each_days_parquet_files_sorted(tmp_path):
    c = _write_corpus(tmp_path / "c", parts=3)
    imp = c / "impressions"
    (imp / "day=0003").mkdir()  # an empty day stays listed (the validator names it)
    (imp / "day=0001" / "README").write_text("not data")  # as before: only *.parquet files are a day's data
    (imp / "day=0001" / "old").mkdir()
    shutil.copy(imp / "day=0001" / "part-0000.parquet", imp / "day=0001" / "old" / "part-0000.parquet")
    files = Corpus(c).day_files()
    assert files == {**{d: [imp / f"day={d:04d}" / f"part-{p:04d}.parquet" for p in range(3)] for d in range(3)},
                     3: []}
    assert all(isinstance(f, Path) for fs in files.values() for f in fs)
    with pytest.raises(DataError, match=r"day=0003: day has no Parquet files"):
        validate_corpus(c)


def test_relative_corpus_path(tmp_path, monkeypatch):
    _write_corpus(tmp_path / "run=1" / "c")  # '=' above the corpus is no partition key
    monkeypatch.chdir(tmp_path)
    c = Corpus("run=1/c")
    assert c.day_files()[2] == [Path("run=1/c/impressions/day=0002/part-0000.parquet")]
    assert c.read_day(2).num_rows == 25


def _direct(c: Path, day: int, columns=None) -> pa.Table:
    """The previous behaviour: each of the day's files read with pyarrow.parquet, in name order, concatenated."""
    files = sorted((c / "impressions" / f"day={day:04d}").glob("*.parquet"))
    tables = [pq.read_table(f, columns=columns) for f in files]
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


@pytest.mark.parametrize("columns", [None, ["item_id"], ["click", "user_id", "day"]])
def test_read_day_is_the_files_read_with_pyarrow_parquet(tmp_path, columns):
    c = _write_corpus(tmp_path / "c", parts=3)
    corpus = Corpus(c)
    for day in corpus.days():
        got, want = corpus.read_day(day, columns), _direct(c, day, columns)
        assert got.schema.equals(want.schema, check_metadata=True) and got.equals(want)
        assert got.column_names == (columns or ["day", "user_id", "watch_item_id", "item_id", "click", "engaged"])
    full = corpus.read_day(1)
    assert full.schema.field("day").type == pa.int32() and full["day"].to_pylist() == [1] * 75  # one day column


def test_read_day_keeps_each_files_own_day_column_and_types(tmp_path):
    """The partition key does not replace the files' own `day` column: an imported file's int64 days, its column
    order and schema metadata come through as pyarrow.parquet reads them."""
    c = _write_corpus(tmp_path / "c")
    f = c / "impressions" / "day=0001" / "part-0000.parquet"
    t = pq.read_table(f)
    t = t.set_column(0, "day", pa.array(t["day"].to_numpy().astype(np.int64)))
    # every file keeps `engaged` (a column is in all impression files or in none: issue 32)
    t = t.select(["user_id", "item_id", "day", "click", "watch_item_id", "engaged"]).replace_schema_metadata(
        {"src": "import"})
    pq.write_table(t, f)
    got = Corpus(c).read_day(1)
    assert got.schema.equals(_direct(c, 1).schema, check_metadata=True) and got.equals(_direct(c, 1))
    assert got.column_names == ["user_id", "item_id", "day", "click", "watch_item_id", "engaged"]
    assert got.schema.field("day").type == pa.int64() and got.schema.metadata == {b"src": b"import"}
    # a file whose rows claim another day is read as it is (the validator names it), not relabelled
    t2 = t.set_column(2, "day", pa.array([7] * t.num_rows, pa.int64()))
    pq.write_table(t2, f)
    assert Corpus(c).read_day(1)["day"].to_pylist() == [7] * t.num_rows
    with pytest.raises(DataError, match="field 'day': values \\[7\\] differ from its partition day=0001"):
        validate_corpus(c)


def test_read_day_errors_name_the_file(corpus):
    f = corpus / "impressions" / "day=0002" / "part-0000.parquet"
    f.write_text("not parquet")
    c = Corpus(corpus)
    assert c.days() == [0, 1, 2]  # listing opens no file
    with pytest.raises(DataError, match=f"{f}: not a readable Parquet file"):
        c.read_day(2)
    with pytest.raises(DataError, match=r"part-0000.parquet: not a readable Parquet file \(No match for FieldRef"):
        c.read_day(1, ["nope"])  # as pyarrow.parquet reported it before
    f.unlink()
    with pytest.raises(DataError, match=f"{f}: file is missing"):
        c.read_day(2)  # listed before it was deleted


def test_read_day_share_still_covers_the_day(tmp_path):
    c = _write_corpus(tmp_path / "c", parts=3)
    corpus = Corpus(c)
    whole = corpus.read_day(1)
    shares = [corpus.read_day_share(1, r, 3) for r in range(3)]
    assert pa.concat_tables(shares).equals(whole)
