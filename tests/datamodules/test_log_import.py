"""`semid data import`: a user's own log and items table -> a corpus that `semid data validate` accepts; each bad
input is one line naming file, line and field, exit 2, nothing left behind (issue 31 items 1 and 4)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from semid.cli import main
from semid.datamodules.corpus import embedding_array
from semid.datamodules.gate import check_corpus

T0 = 956620800  # 2000-04-25 00:00 UTC
HEADER = "user,item,time,rating"


def _rows(n_users: int = 6, n_items: int = 8, days: int = 4) -> list[str]:
    rng = np.random.default_rng(0)
    out = []
    for d in range(days):
        for u in range(n_users):
            for k in range(3):
                out.append(f"{u},{100 + int(rng.integers(n_items))},{T0 + d * 86400 + 600 * u + k},"
                           f"{int(rng.integers(1, 6))}")
    return out


def _write(tmp: Path, rows: list[str], header: str = HEADER, name: str = "log.csv", n_items: int = 8) -> Path:
    (tmp / name).write_text("\n".join([header, *rows]) + "\n")
    ids = np.arange(100, 100 + n_items)
    emb = np.random.default_rng(1).normal(size=(n_items, 4)).astype(np.float32)
    pq.write_table(pa.table({"item_id": pa.array(ids, pa.int64()), "embedding": embedding_array(emb)}),
                   tmp / "emb.parquet")
    return tmp / name


FLAGS = ["--user", "user", "--item", "item", "--time", "time", "--label", "rating>=4"]


def _import(tmp: Path, log: Path, *extra: str) -> int:
    return main(["data", "import", str(log), "--embeddings", str(tmp / "emb.parquet"), "--out", str(tmp / "corpus"),
                 *FLAGS, *extra])


def _refused(tmp: Path, log: Path, capsys: pytest.CaptureFixture[str], *extra: str, flags: list[str] | None = None) -> str:
    args = ["data", "import", str(log), "--embeddings", str(tmp / "emb.parquet"), "--out", str(tmp / "corpus"),
            *(FLAGS if flags is None else flags), *extra]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    # nothing left behind: no corpus, no temporary corpus, no spill folder
    assert sorted(p.name for p in tmp.iterdir()) == sorted(p.name for p in tmp.iterdir()
                                                         if not p.name.startswith(".") and p.name != "corpus"), \
        list(tmp.iterdir())
    return err


def test_a_log_becomes_a_valid_corpus_with_previous_positive_context(tmp_path: Path) -> None:
    log = _write(tmp_path, _rows())
    assert _import(tmp_path, log, "--label2", "rating==5") == 0
    corpus, report = check_corpus(tmp_path / "corpus", rescan=True)
    assert report.n_impressions == 72 and report.days == [0, 1, 2, 3]
    t = ds.dataset(tmp_path / "corpus" / "impressions").to_table().to_pydict()
    src = [line.split(",") for line in _rows()]
    assert sorted(t["click"]) == sorted(int(int(r[3]) >= 4) for r in src)
    assert sum(t["engaged"]) == sum(int(r[3]) == 5 for r in src)
    # context item = the user's previous positive (strictly earlier), replayed by hand over the time-ordered log;
    # a day's rows are written by user, then time
    last: dict[int, int] = {}
    want: dict[tuple[int, int], list[int | None]] = {}
    for u, i, ts, r in sorted(((int(a), int(b), int(c), int(d)) for a, b, c, d in src), key=lambda x: (x[0], x[2])):
        want.setdefault(((ts - T0) // 86400, u), []).append(last.get(u))
        if r >= 4:
            last[u] = i
    got: dict[tuple[int, int], list[int | None]] = {}
    for d, u, w in zip(t["day"], t["user_id"], t["watch_item_id"]):
        got.setdefault((d, u), []).append(w)
    assert got == want
    meta = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert meta["import"]["label"] == "rating >= 4" and "negative_sampling" not in meta
    assert meta["fingerprint"] == corpus.meta["fingerprint"]


def test_weekly_periods_and_window(tmp_path: Path) -> None:
    log = _write(tmp_path, _rows(days=20))
    assert _import(tmp_path, log, "--period", "week", "--since", "2000-04-26", "--until", "2000-05-10") == 0
    meta = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert meta["days"] == [0, 1, 2] and meta["period_days"] == 7
    assert meta["import"]["dropped_before_since"] == 18 and meta["import"]["dropped_after_until"] == 18 * 4


def test_positive_only_log_is_refused_unless_negatives_are_asked_for(tmp_path: Path, capsys) -> None:
    rows = [",".join(r.split(",")[:3]) for r in _rows()]
    log = _write(tmp_path, rows, header="user,item,time")
    flags = ["--user", "user", "--item", "item", "--time", "time"]
    err = _refused(tmp_path, log, capsys, flags=flags)
    assert "positive-only" in err and "--negatives K" in err
    assert _import_flags(tmp_path, log, flags + ["--negatives", "2", "--seed", "3"]) == 0
    check_corpus(tmp_path / "corpus", rescan=True)
    meta = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    neg = meta["negative_sampling"]
    t = ds.dataset(tmp_path / "corpus" / "impressions").to_table()
    assert t.num_rows == 72 + neg["sampled"] and neg["sampled"] + neg["dropped_equal_to_positive"] == 144
    assert sum(t["click"].to_pylist()) == 72 and neg["seed"] == 3 and neg["per_positive"] == 2
    first = pq.read_table(tmp_path / "corpus" / "impressions" / "day=0000" / "part-0000.parquet")
    # the same seed gives the same corpus
    fp = meta["fingerprint"]
    assert _import_flags(tmp_path, log, flags + ["--negatives", "2", "--seed", "3", "--overwrite"]) == 0
    assert json.loads((tmp_path / "corpus" / "corpus.json").read_text())["fingerprint"] == fp
    assert first.num_rows > 18


def _import_flags(tmp: Path, log: Path, flags: list[str]) -> int:
    return main(["data", "import", str(log), "--embeddings", str(tmp / "emb.parquet"), "--out", str(tmp / "corpus"),
                 *flags])


def test_a_labelled_log_without_negatives_is_refused(tmp_path: Path, capsys) -> None:
    rows = [r.rsplit(",", 1)[0] + ",5" for r in _rows()]
    err = _refused(tmp_path, _write(tmp_path, rows), capsys)
    assert "all 72 rows are positives" in err and "--negatives" in err


def test_missing_column(tmp_path: Path, capsys) -> None:
    log = _write(tmp_path, _rows(), header="user,itme,time,rating")
    err = _refused(tmp_path, log, capsys)
    assert f"{log}, line 1: field 'item'" in err and "--item COLUMN" in err


def test_timestamp_that_does_not_parse(tmp_path: Path, capsys) -> None:
    rows = _rows()
    rows[40] = "3,101,2000-04-26,4"
    err = _refused(tmp_path, _write(tmp_path, rows), capsys)
    assert "line 42: field 'time'" in err and "'2000-04-26'" in err


def test_iso_and_pattern_times(tmp_path: Path) -> None:
    rows = [f"{u},{100 + u},2000-04-{25 + d} 10:0{u}:00,{5 - u % 3}" for d in range(3) for u in range(4)]
    log = _write(tmp_path, rows)
    assert _import(tmp_path, log, "--time-format", "iso") == 0
    rows = [f"{u},{100 + u},04/{25 + d}/2000 8:0{u}:00 PM,{5 - u % 3}" for d in range(3) for u in range(4)]
    log = _write(tmp_path, rows)
    assert _import(tmp_path, log, "--time-format", "%m/%d/%Y %I:%M:%S %p", "--overwrite") == 0
    assert json.loads((tmp_path / "corpus" / "corpus.json").read_text())["days"] == [0, 1, 2]


def test_label_outside_the_mapping(tmp_path: Path, capsys) -> None:
    rows = [",".join(r.split(",")[:3]) + (",click" if k % 2 else ",skip") for k, r in enumerate(_rows())]
    rows[7] = rows[7].rsplit(",", 1)[0] + ",share"
    log = _write(tmp_path, rows, header="user,item,time,action")
    flags = ["--user", "user", "--item", "item", "--time", "time", "--label", "action:click/skip"]
    err = _refused(tmp_path, log, capsys, flags=flags)
    assert "line 9: field 'action'" in err and "'share' is outside the mapping" in err
    rows[7] = rows[7].rsplit(",", 1)[0] + ",click"
    log = _write(tmp_path, rows, header="user,item,time,action")
    assert _import_flags(tmp_path, log, flags) == 0


def test_items_table_missing_an_id_the_log_uses(tmp_path: Path, capsys) -> None:
    rows = _rows()
    rows[10] = "2,999,956621000,4"
    err = _refused(tmp_path, _write(tmp_path, rows), capsys)
    assert "line 12: field 'item'" in err and "'999' is not in the items table" in err and "--drop-missing" in err
    assert _import(tmp_path, tmp_path / "log.csv", "--drop-missing") == 0
    assert json.loads((tmp_path / "corpus" / "corpus.json").read_text())["import"]["dropped_unknown_item"] == 1


def test_repeated_header_row(tmp_path: Path, capsys) -> None:
    rows = _rows()
    rows.insert(30, HEADER)
    err = _refused(tmp_path, _write(tmp_path, rows), capsys)
    assert "line 32" in err and "repeated header row" in err


def test_text_not_valid_in_the_declared_encoding(tmp_path: Path, capsys) -> None:
    log = _write(tmp_path, _rows())
    lines = log.read_bytes().split(b"\n")
    lines[20] = "caf\u00e9".encode("latin-1") + lines[20][lines[20].index(b","):]  # a latin-1 user name
    log.write_bytes(b"\n".join(lines))
    err = _refused(tmp_path, log, capsys)
    assert "line 21: field 'user'" in err and "not valid utf-8" in err and "--encoding" in err
    assert _import(tmp_path, log, "--encoding", "latin-1") == 0


def test_blank_line_is_refused_with_its_line(tmp_path: Path, capsys) -> None:
    rows = _rows()
    rows.insert(5, "")
    err = _refused(tmp_path, _write(tmp_path, rows), capsys)
    assert "line 7" in err and "blank line" in err


def test_items_table_with_text_ids_and_an_embedding_column(tmp_path: Path) -> None:
    rows = [f"u{u},N{100 + (u + d) % 5},{d},{int((u + d) % 2)}" for d in range(3) for u in range(6)]
    (tmp_path / "log.tsv").write_text("\n".join(["u\tn\tday\tclicked"] + [r.replace(",", "\t") for r in rows]) + "\n")
    emb = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    pq.write_table(pa.table({"nid": [f"N{100 + i}" for i in range(6)], "vec": embedding_array(emb)}),
                   tmp_path / "items.parquet")
    assert main(["data", "import", str(tmp_path / "log.tsv"), "--items", str(tmp_path / "items.parquet"),
                 "--item-id", "nid", "--embedding-column", "vec", "--user", "u", "--item", "n", "--day", "day",
                 "--label", "clicked", "--out", str(tmp_path / "corpus")]) == 0
    _, report = check_corpus(tmp_path / "corpus", rescan=True)
    items = pq.read_table(tmp_path / "corpus" / "items.parquet")
    assert items["source_id"].to_pylist() == [f"N{100 + i}" for i in range(5)]  # N105 is never used
    np.testing.assert_array_equal(np.stack(items["embedding"].to_numpy(zero_copy_only=False)), emb[:5])
    assert report.n_impressions == 18 and report.days == [0, 1, 2]


def test_flags_are_checked_before_any_file_is_read(tmp_path: Path, capsys) -> None:
    log = _write(tmp_path, _rows())
    assert "--period" in _refused(tmp_path, log, capsys, "--period", "fortnight")
    assert "--label" in _refused(tmp_path, log, capsys, flags=FLAGS[:-1] + ["rating>=four"])


def _spread_rows(days: int = 3, per_day: int = 60) -> list[str]:
    """Users active across many hours of each day (and equal timestamps within an hour), so that a day can be
    split into slices of whole hours with context items crossing slice boundaries."""
    rng = np.random.default_rng(3)
    out = []
    for d in range(days):
        for _ in range(per_day):
            ts = T0 + d * 86400 + 3600 * int(rng.integers(24)) + 60 * int(rng.integers(3))
            out.append(f"{int(rng.integers(5))},{100 + int(rng.integers(8))},{ts},{int(rng.integers(1, 6))}")
    return out


def _day_rows(corpus: Path) -> dict[int, list[tuple]]:
    t = ds.dataset(corpus / "impressions").to_table().to_pydict()
    out: dict[int, list[tuple]] = {}
    for row in zip(t["day"], t["user_id"], t["watch_item_id"], t["item_id"], t["click"]):
        out.setdefault(row[0], []).append(row[1:])
    return {d: sorted(rows, key=repr) for d, rows in out.items()}


def test_a_day_larger_than_a_slice_gives_the_same_rows_and_context(tmp_path: Path, monkeypatch) -> None:
    """Pass 2 holds at most SLICE_ROWS rows (whole hours) of a day: the same rows and previous-positive context
    items as the whole day at once, written as one part per slice."""
    import semid.datamodules.log_corpus as log_corpus

    whole, sliced = tmp_path / "whole", tmp_path / "sliced"
    for d in (whole, sliced):
        d.mkdir()
        _write(d, _spread_rows())
    assert _import(whole, whole / "log.csv") == 0
    monkeypatch.setattr(log_corpus, "SLICE_ROWS", 7)
    assert _import(sliced, sliced / "log.csv") == 0
    assert _day_rows(sliced / "corpus") == _day_rows(whole / "corpus")
    parts = [len(list(p.glob("*.parquet"))) for p in sorted((sliced / "corpus" / "impressions").iterdir())]
    assert len(parts) == 3 and min(parts) >= 5, parts  # 60 rows a day over <= 24 hours, <= 7 rows a slice
    assert all(len(list(p.glob("*.parquet"))) == 1 for p in (whole / "corpus" / "impressions").iterdir())
    check_corpus(sliced / "corpus", rescan=True)


def test_sliced_days_sample_negatives_from_the_whole_days_popularity(tmp_path: Path, monkeypatch) -> None:
    import semid.datamodules.log_corpus as log_corpus

    rows = [",".join(r.split(",")[:3]) for r in _spread_rows()]
    _write(tmp_path, rows, header="user,item,time")
    monkeypatch.setattr(log_corpus, "SLICE_ROWS", 7)
    flags = ["--user", "user", "--item", "item", "--time", "time"]
    assert main(["data", "import", str(tmp_path / "log.csv"), "--embeddings", str(tmp_path / "emb.parquet"),
                 "--out", str(tmp_path / "corpus"), *flags, "--negatives", "2"]) == 0
    meta = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    t = ds.dataset(tmp_path / "corpus" / "impressions").to_table().to_pydict()
    assert sum(t["click"]) == 180 and len(t["click"]) == 180 + meta["negative_sampling"]["sampled"]
    assert meta["negative_sampling"]["sampled"] + meta["negative_sampling"]["dropped_equal_to_positive"] == 360
    # popularity of day d counts all of day d's clicks: every drawn item was clicked on or before its day
    clicked_by: dict[int, set[int]] = {}
    for d, i, c in sorted(zip(t["day"], t["item_id"], t["click"])):
        if c:
            clicked_by.setdefault(d, set()).add(i)
    for d, i, c in zip(t["day"], t["item_id"], t["click"]):
        if not c:
            assert any(i in clicked_by.get(e, set()) for e in range(d + 1))


def test_a_log_read_in_many_small_blocks_gives_the_same_corpus(tmp_path: Path, monkeypatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The CSV is read a block at a time (small blocks: Arrow reads up to 32 ahead): block boundaries change
    neither the corpus nor the line a bad value is reported at."""
    import semid.datamodules.log_read as log_read

    one, many = tmp_path / "one", tmp_path / "many"
    for d in (one, many):
        d.mkdir()
        _write(d, _spread_rows())
    assert _import(one, one / "log.csv") == 0
    monkeypatch.setattr(log_read, "BLOCK_BYTES", 256)  # ~10 rows a block
    assert _import(many, many / "log.csv") == 0
    fp = [json.loads((d / "corpus" / "corpus.json").read_text())["fingerprint"] for d in (one, many)]
    assert fp[0] == fp[1]
    rows = _spread_rows()
    rows[150] = rows[150].rsplit(",", 1)[0] + ",five"
    bad = tmp_path / "bad"
    bad.mkdir()
    err = _refused(bad, _write(bad, rows), capsys)
    assert "line 152" in err and "rating" in err, err
