"""MovieLens import for every supported layout, on hand-written miniature files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semid.datamodules.corpus import Corpus
from semid.datamodules.movielens import import_movielens
from semid.datamodules.validate import validate_corpus
from semid.cli import main
from semid.core.errors import SemidError

DAY = 86400
T0 = 880000000
# (user, item, rating, seconds after T0): user 1 rates 1 then 2 then 3; day 2 has no ratings at all
RATINGS = [(1, 1, 5, 0), (1, 2, 3, 100), (2, 2, 4, DAY + 5), (1, 3, 4, 3 * DAY), (2, 1, 2, 3 * DAY + 1)]
MOVIES = [(1, "Toy Story", 1995, ["Animation", "Comedy"]), (2, "Heat", 1995, ["Action"]),
          (3, "Fargo", 1996, ["Crime", "Drama"])]


def _embeddings(path: Path, ids=(1, 2, 3), dim=3) -> None:
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(len(ids) * dim, dtype=np.float32)), dim)
    pq.write_table(pa.table({"item_id": pa.array(ids, pa.int64()), "embedding": emb}), path)


def _ml100k(d: Path) -> None:
    d.joinpath("u.data").write_text("".join(f"{u}\t{i}\t{r}\t{T0 + t}\n" for u, i, r, t in RATINGS))
    rows = []
    for i, title, year, genres in MOVIES:
        flags = ["0"] * 19
        for g in genres:
            flags[["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                   "Drama"].index(g)] = "1"
        rows.append("|".join([str(i), f"{title} ({year})", "01-Jan-1995", "", "http://x"] + flags))
    d.joinpath("u.item").write_bytes("\n".join(rows).encode("latin-1"))


def _recbole(d: Path) -> None:
    d.joinpath("ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" +
                                           "".join(f"{u}\t{i}\t{r}\t{T0 + t}\n" for u, i, r, t in RATINGS))
    d.joinpath("ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" +
                                          "".join(f"{i}\t{t}\t{y}\t{' '.join(g)}\n" for i, t, y, g in MOVIES))


def _ml1m(d: Path) -> None:
    d.joinpath("ratings.dat").write_text("".join(f"{u}::{i}::{r}::{T0 + t}\n" for u, i, r, t in RATINGS))
    d.joinpath("movies.dat").write_bytes("".join(f"{i}::{t} ({y})::{'|'.join(g)}\n" for i, t, y, g in MOVIES)
                                         .encode("latin-1"))


def _latest(d: Path) -> None:
    d.joinpath("ratings.csv").write_text("userId,movieId,rating,timestamp\n" +
                                         "".join(f"{u},{i},{r}.0,{T0 + t}\n" for u, i, r, t in RATINGS))
    d.joinpath("movies.csv").write_text("movieId,title,genres\n" +
                                        "".join(f'{i},"{t} ({y})",{"|".join(g)}\n' for i, t, y, g in MOVIES))


@pytest.mark.parametrize("layout", [_ml100k, _recbole, _ml1m, _latest], ids=["u.data", "recbole", "ml-1m", "csv"])
def test_every_layout_imports_the_same_corpus(tmp_path, layout):
    src = tmp_path / "src"
    src.mkdir()
    layout(src)
    _embeddings(src / "item_embeddings_test.parquet")
    out = import_movielens(src, tmp_path / "out")
    assert validate_corpus(out).n_impressions == 5
    c = Corpus(out)
    items = c.read_items()
    assert items.item_id.tolist() == [1, 2, 3]
    assert items.first_day.tolist() == [0, 0, 2]  # the empty calendar day 2 is dropped: day 3 -> 2
    assert list(items.extra["title"]) == ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)"]
    assert c.days() == [0, 1, 2]
    assert c.meta["empty_periods_dropped"] == 1
    t = pa.concat_tables([tab for _, tab in c.iter_days()]).to_pydict()
    rows = sorted(zip(t["user_id"], t["item_id"], t["watch_item_id"], t["click"], t["engaged"], t["day"]))
    # watch item = the user's previous rated item; click = rating >= 4; engaged = rating 5
    assert rows == [(1, 1, None, 1, 1, 0), (1, 2, 1, 0, 0, 0), (1, 3, 2, 1, 0, 2),
                    (2, 1, 2, 0, 0, 2), (2, 2, None, 1, 0, 1)]


def test_period_and_threshold_are_configurable(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _latest(src)
    _embeddings(src / "item_embeddings.parquet")
    c = Corpus(import_movielens(src, tmp_path / "out", period_days=7, min_rating=3))
    assert c.days() == [0]
    t = c.read_day(0).to_pydict()
    assert sum(t["click"]) == 4


def test_missing_embeddings_are_refused_or_dropped(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _latest(src)
    _embeddings(src / "emb.parquet", ids=(1, 2))
    assert main(["data", "movielens", str(src), "--out", str(tmp_path / "o"), "--embeddings",
                 str(src / "emb.parquet")]) == 2
    err = capsys.readouterr().err
    assert "1 rated item(s) have no embedding, e.g. 3" in err and "--drop-missing" in err
    assert not (tmp_path / "o").exists()
    out = import_movielens(src, tmp_path / "o", embeddings=src / "emb.parquet", drop_missing=True)
    assert Corpus(out).read_items().item_id.tolist() == [1, 2]
    assert validate_corpus(out).n_impressions == 4


def test_no_embeddings_and_no_text_model_is_a_clear_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _latest(src)
    with pytest.raises(SemidError, match="no content embeddings"):
        import_movielens(src, tmp_path / "o")
    with pytest.raises(SemidError, match="not a local directory"):
        import_movielens(src, tmp_path / "o", text_model=str(tmp_path / "no-model"))


def test_unknown_layout(tmp_path):
    with pytest.raises(SemidError, match="no MovieLens files found"):
        import_movielens(tmp_path, tmp_path / "o")


# ---------------------------------------------------------------------------------------------
# ML-1M as GroupLens ships it, and the date window

def _ml1m_as_shipped(d: Path, ratings: list[tuple[int, int, int, int]]) -> None:
    """ratings.dat, movies.dat and users.dat: '::' between fields, CRLF line ends, latin-1 titles."""
    d.joinpath("ratings.dat").write_bytes("".join(f"{u}::{i}::{r}::{t}\r\n" for u, i, r, t in ratings).encode())
    d.joinpath("movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\r\n2::Misérables, Les (1995)::Drama|Musical\r\n"
        "3::Café au Lait (1993)::Comedy\r\n4::Never Rated (1999)::Drama\r\n".encode("latin-1"))
    d.joinpath("users.dat").write_bytes(b"1::F::1::10::48067\r\n2::M::56::16::70072\r\n")


def _utc(day: str, seconds: int = 0) -> int:
    from datetime import datetime, timezone

    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()) + seconds


WINDOW = [(1, 1, 5, _utc("2000-04-24", 80000)),  # the day before --since: dropped
          (1, 2, 4, _utc("2000-04-25", 10)), (2, 2, 3, _utc("2000-04-25", 86399)),  # day 0
          (2, 1, 4, _utc("2000-05-01", 3600)),  # day 6: still week 0
          (1, 3, 5, _utc("2000-05-02", 1)),  # week 1
          (2, 3, 2, _utc("2000-05-16", 50000)),  # --until day, late in it: kept; week 3 (week 2 empty)
          (1, 1, 4, _utc("2000-05-17", 0))]  # midnight after --until: dropped


def test_ml1m_as_shipped_latin1_crlf(tmp_path):
    from semid.datamodules.movielens import read_movielens

    src = tmp_path / "ml"
    src.mkdir()
    _ml1m_as_shipped(src, WINDOW)
    source, r, movies = read_movielens(src)
    assert source.name == "ml-1m" and source.other == (src / "users.dat",)
    assert r.user.tolist() == [u for u, *_ in WINDOW] and r.ts.tolist() == [t for *_, t in WINDOW]
    assert r.rating.dtype == np.float32 and r.rating.tolist() == [5, 4, 3, 4, 5, 2, 4]
    # latin-1 decoded (not mojibake), no '\r' left on the genres
    assert movies.title == ["Toy Story (1995)", "Misérables, Les (1995)", "Café au Lait (1993)", "Never Rated (1999)"]
    assert movies.text[1] == "Misérables, Les (1995). Genres: Drama, Musical"
    assert movies.text[2] == "Café au Lait (1993). Genres: Comedy"


def test_since_until_window_weekly(tmp_path, capsys):
    from semid.datamodules.movielens_cli import add_movielens_arguments, run_movielens
    import argparse

    src = tmp_path / "ml"
    src.mkdir()
    _ml1m_as_shipped(src, WINDOW)
    _embeddings(src / "item_embeddings.parquet", ids=(1, 2, 3, 4))
    parser = argparse.ArgumentParser()
    add_movielens_arguments(parser)
    out = tmp_path / "out"
    assert run_movielens(parser.parse_args([str(src), "--out", str(out), "--period-days", "7", "--since",
                                            "2000-04-25", "--until", "2000-05-16"])) == 0
    printed = capsys.readouterr().out
    c = Corpus(out)
    assert validate_corpus(out).n_impressions == 5
    # weeks from --since: 04-25..05-01 -> 0, 05-02..05-08 -> 1, (05-09..05-15 empty, dropped), 05-16 -> 2
    t = c.read_day(0).to_pydict()
    assert sorted(zip(t["user_id"], t["item_id"])) == [(1, 2), (2, 1), (2, 2)]
    assert c.days() == [0, 1, 2]
    assert c.read_day(2).to_pydict()["item_id"] == [3]
    items = c.read_items()
    assert items.item_id.tolist() == [1, 2, 3] and items.first_day.tolist() == [0, 0, 1]
    # the watch item is the previous *kept* rating: user 1's first kept rating has none (item 1 on 04-24 is gone)
    t1 = c.read_day(1).to_pydict()
    assert t1["watch_item_id"] == [2]
    s = c.meta["import"]
    assert (s["dropped_before_since"], s["dropped_after_until"], s["ratings_kept"]) == (1, 1, 5)
    assert (s["movies_never_rated"], s["movies_listed"], s["empty_periods_dropped"]) == (1, 4, 1)
    assert (s["periods"], s["last_period_start"], s["last_period_days"]) == (3, "2000-05-16", 1)
    assert s["new_movies_per_period"] == [2, 1, 0] and s["new_movie_ratings_per_period"] == [3, 1, 0]
    assert (s["clicks"], s["below_min_rating"], s["engaged"]) == (3, 2, 1)
    assert c.meta["since"] == "2000-04-25" and c.meta["until"] == "2000-05-16"
    assert "window 2000-04-25..2000-05-16: dropped 1 ratings before it and 1 after it" in printed
    assert "kept 5 ratings by 2 users of 3 movies: 3 clicks (rating >= 4), 2 below --min-rating" in printed
    assert "movies not in the corpus: 1 listed movies never rated, 0 rated only outside the window" in printed
    assert "3 periods of 7 days from 2000-04-25 (last starts 2000-05-16; the last has 1 day(s)); 1 empty" in printed
    assert f"not used: {src / 'users.dat'}" in printed
    assert printed.rstrip().splitlines()[-1].startswith(f"wrote {out}: 3 items, 5 impressions over 3 days")


def test_without_window_days_start_at_utc_midnight(tmp_path):
    src = tmp_path / "ml"
    src.mkdir()
    _ml1m_as_shipped(src, WINDOW)
    _embeddings(src / "item_embeddings.parquet", ids=(1, 2, 3, 4))
    c = Corpus(import_movielens(src, tmp_path / "out"))
    # 04-24 22:13 and 04-25 00:00:10 are on different calendar days (not 86400 s after the first rating)
    assert c.meta["day_origin"] == _utc("2000-04-24")
    assert [len(c.read_day(d)) for d in c.days()] == [1, 2, 1, 1, 1, 1]
    assert c.meta["import"]["since"] is None and c.meta["import"]["dropped_after_until"] == 0


@pytest.mark.parametrize("kwargs,message", [
    ({"since": "2000-13-01"}, "--since '2000-13-01' is not a date (write YYYY-MM-DD"),
    ({"until": "16/05/2000"}, "--until '16/05/2000' is not a date"),
    ({"since": "2000-05-02", "until": "2000-05-01"}, "--until 2000-05-01 is before --since 2000-05-02"),
    ({"since": "2001-01-01"}, "no ratings between 2001-01-01 and the last (the file's ratings span "
                              "2000-04-24..2000-05-17)"),
    ({"period_days": 0}, "--period-days must be an integer >= 1 (got 0)"),
    ({"min_rating": 6}, "--min-rating 6 leaves no clicks (ratings range 2..5)"),
    ({"embeddings": "emb.parquet", "text_model": "minilm"}, "give --embeddings FILE or --text-model, not both"),
])
def test_bad_window_or_thresholds_are_refused_before_writing(tmp_path, kwargs, message):
    src = tmp_path / "ml"
    src.mkdir()
    _ml1m_as_shipped(src, WINDOW)
    _embeddings(src / "item_embeddings.parquet", ids=(1, 2, 3, 4))
    with pytest.raises(SemidError) as e:
        import_movielens(src, tmp_path / "out", **kwargs)
    assert message in str(e.value)
    assert not (tmp_path / "out").exists()
