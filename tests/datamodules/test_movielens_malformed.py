"""A damaged MovieLens file is one line naming the file and the line, exit 2, nothing written (issues 15, 17)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semid.datamodules.corpus import Corpus
from semid.cli import main

T0 = 956620800  # 2000-04-25 00:00 UTC
GOOD = [(u, i, 1 + (u * i) % 5, T0 + 3600 * k) for k, (u, i) in enumerate((u, i) for u in (1, 2, 3, 4) for i in
                                                                          (1, 2, 3, 4, 5, 6, 7, 8, 9, 10))]  # 40


def _embeddings(path: Path) -> None:
    ids = np.arange(1, 11)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.random.default_rng(0).random(30, np.float32)), 3)
    pq.write_table(pa.table({"item_id": pa.array(ids, pa.int64()), "embedding": emb}), path)


def _movies_dat(d: Path) -> None:
    d.joinpath("movies.dat").write_bytes("".join(f"{i}::Movie {i} (1995)::Drama\r\n" for i in range(1, 11))
                                         .encode("latin-1"))


def _ratings_dat(d: Path, lines: list[str], end: str = "\r\n") -> None:
    d.joinpath("ratings.dat").write_bytes(("\r\n".join(lines) + end).encode())


def _dat(rows: list[tuple[int, int, int, int]]) -> list[str]:
    return [f"{u}::{i}::{r}::{t}" for u, i, r, t in rows]


def _u_data(d: Path, lines: list[str], end: str = "\n") -> None:
    d.joinpath("u.data").write_text("\n".join(lines) + end)


def _tsv(rows: list[tuple[int, int, int, int]]) -> list[str]:
    return [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows]


def _run(src: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    _embeddings(src / "item_embeddings.parquet")
    rc = main(["data", "movielens", str(src), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err  # one line, no traceback
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))  # nothing half-written
    return err.strip()


def _case(tmp_path: Path, kind: str, make) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    src = tmp_path / kind
    src.mkdir()
    make(src)
    return src, tmp_path / "out"


def test_a_clean_file_imports(tmp_path, capsys):
    src, out = _case(tmp_path, "ok", lambda d: (_ratings_dat(d, _dat(GOOD)), _movies_dat(d)))
    _embeddings(src / "item_embeddings.parquet")
    assert main(["data", "movielens", str(src), "--out", str(out)]) == 0
    assert Corpus(out).meta["n_impressions"] == 40


@pytest.mark.parametrize("name,make,expect", [
    # ratings.dat written with tabs / commas instead of '::'
    ("dat-tabs", lambda d: _ratings_dat(d, [x.replace("::", "\t") for x in _dat(GOOD)]),
     ["ratings.dat, line 1:", "1 field(s) where 4 are expected (user::movie::rating::timestamp)",
      "look separated by '\\t', not '::'", "write the file with '::' between fields"]),
    ("dat-commas", lambda d: _ratings_dat(d, _dat(GOOD[:5]) + [x.replace("::", ",") for x in _dat(GOOD[5:])]),
     ["ratings.dat, line 6:", "look separated by ','"]),
    # u.data with '::' or commas instead of tabs
    ("udata-colons", lambda d: _u_data(d, _dat(GOOD)),
     ["u.data, line 1:", "1 field(s) where 4 are expected (user<TAB>item<TAB>rating<TAB>timestamp)",
      "look separated by '::', not '\\t'"]),
    # the download stopped inside the last line (no line end): too few fields ...
    ("dat-truncated", lambda d: _ratings_dat(d, _dat(GOOD) + ["4::10::3"], end=""),
     ["ratings.dat, line 41:", "3 field(s) where 4 are expected", "the file ends inside this line (truncated?)"]),
    ("udata-truncated", lambda d: _u_data(d, _tsv(GOOD) + ["4\t1"], end=""),
     ["u.data, line 41:", "2 field(s) where 4 are expected", "truncated?"]),
    # ... or inside the timestamp, which still parses, but as a time in 1970 that would move day 0
    ("dat-stamp-cut", lambda d: _ratings_dat(d, _dat(GOOD) + [f"4::10::3::{str(T0)[:5]}"], end=""),
     ["ratings.dat, line 41: field 'timestamp': 95662 (1970-01-02) is years away from the other ratings "
      "(2000-04-25..2000-04-26; 1 rating(s) like it); the file ends inside this line (truncated?)",
      "would shift every day"]),
    ("udata-stamp-cut", lambda d: _u_data(d, _tsv(GOOD[:7]) + [f"4\t10\t3\t{str(T0)[:-1]}"] + _tsv(GOOD[7:])),
     ["u.data, line 8: field 'timestamp': 95662080 (1973-01-12) is years away"]),
    ("dat-stamp-extra-digit", lambda d: _ratings_dat(d, _dat(GOOD[:3]) + [f"4::10::3::{T0}0"] + _dat(GOOD[3:])),
     ["ratings.dat, line 4: field 'timestamp': 9566208000 (2273-02-21) is years away"]),
    # non-numeric and negative fields, counted on physical lines (blank lines and CRLF included)
    ("dat-rating-text", lambda d: _ratings_dat(d, _dat(GOOD[:2]) + ["", "3::4::five::956620800"] + _dat(GOOD[2:])),
     ["ratings.dat, line 4: field 'rating': 'five' is not a number (fix or delete that line)"]),
    ("dat-movie-text", lambda d: _ratings_dat(d, _dat(GOOD[:9]) + ["3::abc::4::956620800"] + _dat(GOOD[9:])),
     ["ratings.dat, line 10: field 'movie': 'abc' is not a non-negative integer id"]),
    ("udata-negative-user", lambda d: _u_data(d, _tsv(GOOD[:1]) + ["-3\t4\t4\t956620800"] + _tsv(GOOD[1:])),
     ["u.data, line 2: field 'user': '-3' is not a non-negative integer id"]),
    ("dat-stamp-empty", lambda d: _ratings_dat(d, _dat(GOOD[:1]) + ["3::4::4::"] + _dat(GOOD[1:])),
     ["ratings.dat, line 2: field 'timestamp': '' is not a Unix time in seconds"]),
    ("csv-rating-text", lambda d: d.joinpath("ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in GOOD[:3]) +
        "4,5,n/a,956620800\n"),
     ["ratings.csv, line 5: field 'rating': 'n/a' is not a number"]),
    ("inter-no-rating-column", lambda d: d.joinpath("x.inter").write_text(
        "user_id:token\titem_id:token\tscore:float\ttimestamp:float\n1\t2\t3\t956620800\n"),
     ["x.inter, line 1: field 'rating': column is missing from the header (found: user_id, item_id, score, "
      "timestamp)"]),
    # the movie list is checked too
    ("movies-dat-fields", lambda d: (_ratings_dat(d, _dat(GOOD)), d.joinpath("movies.dat").write_bytes(
        b"1::Heat (1995)::Action\r\n2::Heat (1995)|Action\r\n")),
     ["movies.dat, line 2:", "2 field(s) where 3 are expected (movie::title::genres)"]),
    ("movies-dat-id", lambda d: (_ratings_dat(d, _dat(GOOD)), d.joinpath("movies.dat").write_bytes(
        b"1::Heat (1995)::Action\r\nx2::Fargo (1996)::Crime\r\n")),
     ["movies.dat, line 2: field 'movie': 'x2' is not a non-negative integer id"]),
])
def test_a_damaged_file_is_one_line_naming_it_and_the_line(tmp_path, capsys, name, make, expect):
    src, out = _case(tmp_path, name, make)
    err = _run(src, out, capsys)
    assert err.startswith(f"semid: error: {src}/"), err
    for part in expect:
        assert part in err, (part, err)


def test_two_large_separate_eras_are_data_not_damage(tmp_path, capsys):
    """Timestamps years apart are refused only when few ratings lie out there."""
    late = [(u, i, r, t + 6 * 365 * 86400) for u, i, r, t in GOOD[:10]]  # 10 of 50 six years later
    src, out = _case(tmp_path, "eras", lambda d: _ratings_dat(d, _dat(GOOD + late)))
    _embeddings(src / "item_embeddings.parquet")
    assert main(["data", "movielens", str(src), "--out", str(out)]) == 0
    assert Corpus(out).meta["n_impressions"] == 50
