"""MovieLens -> corpus format: ml-100k (``u.data``/``u.item`` or RecBole ``.inter``/``.item``), ml-1m
(``.dat``), ml-latest/20m/25m/32m (``ratings.csv``/``movies.csv``).

Impressions are ratings: click = ``rating >= min_rating``, engaged = ``rating == 5``; the day is
``(timestamp - first timestamp) // period``; the watch item is the user's previously rated item;
an item's ``first_day`` is the day of its first rating.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from datamodules.corpus import CorpusWriter, to_embedding_matrix, to_int64
from semid.core.errors import DataError, SemidError
from semid.core.fingerprint import fingerprint_file

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western"]


@dataclass
class Ratings:
    user: np.ndarray  # int64
    item: np.ndarray  # int64
    rating: np.ndarray  # float32
    ts: np.ndarray  # int64 seconds


@dataclass
class Movies:
    item: np.ndarray  # int64
    text: list[str]  # "title (year). Genres: a, b"
    title: list[str]


def _csv(data: bytes | Path, names: list[str] | None, delimiter: str, skip_rows: int = 0,
         encoding: str = "utf8") -> pa.Table:
    src = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    return pacsv.read_csv(
        src,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_rows, encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if delimiter == "," else False),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=False))


def _ratings_from(t: pa.Table, path: Path, cols: tuple[str, str, str, str]) -> Ratings:
    u, i, r, ts = cols
    for c in cols:
        if c not in t.column_names:
            raise DataError(path, c, f"column is missing (found: {', '.join(t.column_names)})")
    rating = t[r].to_numpy(zero_copy_only=False).astype(np.float32)
    stamp = t[ts].to_numpy(zero_copy_only=False).astype(np.int64)
    return Ratings(to_int64(t[u], path, u), to_int64(t[i], path, i), rating, stamp)


def _movie(item: int, title: str, year: str | None, genres: list[str]) -> tuple[int, str, str]:
    m = _YEAR.search(title)
    if m and not year:
        year = m.group(1)
    base = _YEAR.sub("", title).strip()
    text = f"{base} ({year})" if year else base
    return item, f"{text}. Genres: {', '.join(g for g in genres if g)}", text


def _movies(rows: list[tuple[int, str, str]]) -> Movies:
    return Movies(np.array([r[0] for r in rows], np.int64), [r[1] for r in rows], [r[2] for r in rows])


def read_movielens(path: Path) -> tuple[str, Ratings, Movies]:
    """Detect the layout under ``path`` and read ratings and movies."""
    path = Path(path)
    if not path.is_dir():
        raise SemidError(f"{path} is not a directory (give the folder that holds the MovieLens files)")
    recbole = sorted(path.glob("*.inter"))
    if (path / "u.data").exists():
        t = _csv(path / "u.data", ["user", "item", "rating", "ts"], "\t")
        ratings = _ratings_from(t, path / "u.data", ("user", "item", "rating", "ts"))
        rows = []
        for line in (path / "u.item").read_bytes().decode("latin-1").splitlines():
            f = line.split("|")
            if len(f) >= 24:
                rows.append(_movie(int(f[0]), f[1], None, [g for g, x in zip(_ML100K_GENRES, f[5:24]) if x == "1"]))
        return "ml-100k", ratings, _movies(rows)
    if recbole:
        inter = recbole[0]
        t = _csv(inter, None, "\t")
        t = t.rename_columns([c.split(":")[0] for c in t.column_names])
        ratings = _ratings_from(t, inter, ("user_id", "item_id", "rating", "timestamp"))
        item_file = inter.with_suffix(".item")
        rows = []
        if item_file.exists():
            it = _csv(item_file, None, "\t")
            it = it.rename_columns([c.split(":")[0] for c in it.column_names])
            ids = to_int64(it["item_id"], item_file, "item_id")
            titles = it["movie_title"].to_pylist() if "movie_title" in it.column_names else [""] * len(ids)
            years = [str(y) for y in it["release_year"].to_pylist()] if "release_year" in it.column_names \
                else [None] * len(ids)
            classes = it["class"].to_pylist() if "class" in it.column_names else [""] * len(ids)
            rows = [_movie(int(i), str(ti), y, str(c).split()) for i, ti, y, c in zip(ids, titles, years, classes)]
        return inter.stem, ratings, _movies(rows)
    if (path / "ratings.dat").exists():
        raw = (path / "ratings.dat").read_bytes().replace(b"::", b"\t")
        t = _csv(raw, ["user", "item", "rating", "ts"], "\t")
        ratings = _ratings_from(t, path / "ratings.dat", ("user", "item", "rating", "ts"))
        rows = []
        if (path / "movies.dat").exists():
            for line in (path / "movies.dat").read_bytes().decode("latin-1").splitlines():
                f = line.split("::")
                if len(f) == 3:
                    rows.append(_movie(int(f[0]), f[1], None, f[2].split("|")))
        return "ml-1m", ratings, _movies(rows)
    if (path / "ratings.csv").exists():
        t = _csv(path / "ratings.csv", None, ",")
        ratings = _ratings_from(t, path / "ratings.csv", ("userId", "movieId", "rating", "timestamp"))
        rows = []
        if (path / "movies.csv").exists():
            m = _csv(path / "movies.csv", None, ",")
            for i, ti, g in zip(m["movieId"].to_pylist(), m["title"].to_pylist(), m["genres"].to_pylist()):
                rows.append(_movie(int(i), ti, None, [] if g == "(no genres listed)" else g.split("|")))
        return path.name, ratings, _movies(rows)
    raise SemidError(f"{path}: no MovieLens files found (expected u.data, *.inter, ratings.dat or ratings.csv)")


def load_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DataError(path, None, "file is missing", "pass --embeddings with a Parquet of (item_id, embedding)")
    try:
        t = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(path, None, f"not a readable Parquet file ({str(e).splitlines()[0]})") from None
    for c in ("item_id", "embedding"):
        if c not in t.column_names:
            raise DataError(path, c, f"column is missing (found: {', '.join(t.column_names)})")
    ids = to_int64(t["item_id"], path, "item_id")
    if len(np.unique(ids)) != len(ids):
        raise DataError(path, "item_id", "duplicate ids", "keep one embedding per item")
    return ids, to_embedding_matrix(t["embedding"], path)


def embed_texts(model_dir: str, texts: list[str]) -> np.ndarray:
    """Sentence embeddings from a *local* sentence-transformers model (never a hub download)."""
    import os

    if not Path(model_dir).is_dir():
        raise SemidError(f"--text-model {model_dir} is not a local directory (models are never downloaded; "
                         "save one with SentenceTransformer(...).save(DIR) on a machine with access)")
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise SemidError("computing embeddings needs sentence-transformers: pip install -e '.[text]' "
                         "(or pass --embeddings with a Parquet of item_id, embedding)") from None
    model = SentenceTransformer(model_dir, device="cpu")
    return model.encode(texts, batch_size=256, normalize_embeddings=True, show_progress_bar=True).astype(np.float32)


def import_movielens(path: Path, out: Path | None = None, *, embeddings: Path | None = None,
                     text_model: str | None = None, min_rating: float = 4.0, period_days: int = 1,
                     drop_missing: bool = False, overwrite: bool = False) -> Path:
    if period_days < 1:
        raise SemidError("--period-days must be >= 1")
    name, r, movies = read_movielens(Path(path))
    if len(r.user) == 0:
        raise DataError(path, None, "no ratings found")
    out = Path(out or Path("corpora") / name)
    if embeddings is None and text_model is None:
        found = sorted(Path(path).glob("item_embeddings*.parquet"))
        if not found:
            raise SemidError(f"{path}: no content embeddings (pass --embeddings FILE.parquet with item_id, "
                             "embedding, or --text-model DIR to compute them)")
        embeddings = found[0]
    rated = np.unique(r.item)
    if embeddings is not None:
        emb_ids, emb = load_embeddings(embeddings)
        source = {"embeddings": str(embeddings), "embeddings_fingerprint": fingerprint_file(embeddings)}
    else:
        if not len(movies.item):
            raise SemidError(f"{path}: no movie titles found to embed")
        emb_ids, emb = movies.item, embed_texts(str(text_model), movies.text)
        source = {"text_model": str(text_model)}
    order = np.argsort(emb_ids)
    emb_ids, emb = emb_ids[order], emb[order]
    have = np.isin(rated, emb_ids)
    if not have.all():
        missing = rated[~have]
        if not drop_missing:
            raise DataError(embeddings or text_model, "item_id", f"{len(missing)} rated item(s) have no "
                            f"embedding, e.g. {int(missing[0])}", "pass --drop-missing to drop them")
        keep = np.isin(r.item, emb_ids)
        r = Ratings(r.user[keep], r.item[keep], r.rating[keep], r.ts[keep])
        rated = rated[have]

    # order events by (user, time) for the watch item, then by time for days
    o = np.lexsort((r.item, r.ts, r.user))
    user, item, rating, ts = r.user[o], r.item[o], r.rating[o], r.ts[o]
    same_user = np.r_[False, user[1:] == user[:-1]]
    watch = np.where(same_user, np.r_[-1, item[:-1]], -1)
    calendar = (ts - ts.min()) // (86400 * period_days)
    # periods without any rating are dropped so that days are consecutive (sequential training)
    present = np.unique(calendar)
    day = np.searchsorted(present, calendar).astype(np.int32)
    first_day = _group_min(item, day)
    click = (rating >= min_rating).astype(np.int8)
    engaged = (rating >= 5).astype(np.int8)

    pos = np.searchsorted(emb_ids, rated)
    title_of = dict(zip(movies.item.tolist(), movies.title))
    titles = [title_of.get(int(i), "") for i in rated]
    with CorpusWriter(out, emb.shape[1], overwrite=overwrite, title=True) as w:
        w.write_items(rated, emb[pos], first_day, title=titles)
        by_day = np.argsort(day, kind="stable")
        bounds = np.searchsorted(day[by_day], np.arange(len(present) + 1))
        for d in range(len(present)):
            sel = by_day[bounds[d]:bounds[d + 1]]
            w.write_impressions(d, {"day": np.full(len(sel), d, np.int32), "user_id": user[sel],
                                    "watch_item_id": watch[sel], "item_id": item[sel], "click": click[sel],
                                    "engaged": engaged[sel]})
        return w.close({"source": "movielens", "dataset": name, "min_rating": min_rating,
                        "period_days": period_days, "n_users": int(len(np.unique(user))),
                        "empty_periods_dropped": int(present[-1] - present[0] + 1 - len(present)),
                        "first_timestamp": int(ts.min()), **source})


def _group_min(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Minimum of ``values`` per unique key, in ascending key order."""
    o = np.lexsort((values, keys))
    k = keys[o]
    start = np.r_[0, np.flatnonzero(k[1:] != k[:-1]) + 1]
    return values[o][start].astype(np.int32)
