"""MovieLens import for every supported layout, on hand-written miniature files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamodules.corpus import Corpus
from datamodules.movielens import import_movielens
from datamodules.validate import validate_corpus
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
