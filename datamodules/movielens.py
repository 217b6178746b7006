"""MovieLens -> corpus format: ml-100k (``u.data``/``u.item`` or RecBole ``.inter``/``.item``), ml-1m/10m
(``ratings.dat``/``movies.dat``: ``::``-separated, latin-1, CRLF as GroupLens ships them) and
ml-latest/20m/25m/32m (``ratings.csv``/``movies.csv``).

Impressions are ratings: click = ``rating >= min_rating``, engaged = ``rating == 5``; ``since``/``until``
(``YYYY-MM-DD``, UTC, both inclusive) keep the ratings of a date window; the day is the number of whole
``period_days`` periods since the window's first day (without ``since``: since UTC midnight of the first kept
rating), and periods without any rating are dropped so that days are consecutive; the watch item is the
user's previous kept rating; an item's ``first_day`` is the day of its first kept rating.

The rating files are read strictly: a line with the wrong number of fields (another separator, a truncated
file), a field that is not a number, or a timestamp years away from all the others (a timestamp cut short
would otherwise move day 0 and shift every day) is a ``DataError`` naming the file and the line.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from semid.datamodules.corpus import CorpusWriter, to_embedding_matrix, to_int64
from semid.core.errors import DataError, SemidError
from semid.core.fingerprint import fingerprint_file

DAY = 86400
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western"]
# A timestamp more than this far from the bulk of the ratings is a damaged line, not data: a 9- or 10-digit
# Unix time that lost a digit lands before 1974, one with a digit too many after 2280, while MovieLens's real
# gaps are at most about a year (ml-20m: a few ratings in 1995, then 1996 on).
_FAR = 5 * 365 * DAY
_FAR_SHARE = 0.05  # ... provided few ratings lie out there (two large separate eras would be real data)
_ID = re.compile(rb"[0-9]+")
_STAMP = re.compile(rb"[0-9]+(\.0*)?")  # RecBole writes timestamp:float columns, e.g. 881250949.0
_OTHER_SEPARATORS = ("::", "\t", ",", ";", "|", " ")
_FIX_LINE = "fix or delete that line"


@dataclass
class Ratings:
    user: np.ndarray  # [N] int64
    item: np.ndarray  # [N] int64
    rating: np.ndarray  # [N] float32
    ts: np.ndarray  # [N] int64 Unix seconds


@dataclass
class Movies:
    item: np.ndarray  # int64
    text: list[str]  # "title (year). Genres: a, b"
    title: list[str]


@dataclass(frozen=True)
class RatingsFile:
    """A ratings text file: its field separator and the names of the four fields semid reads in it."""

    path: Path
    sep: str
    columns: tuple[str, str, str, str]  # (user, item, rating, timestamp) as the file (or its header) names them
    header: bool = False  # the first line names the columns (RecBole ``name:type``, csv)

    @property
    def layout(self) -> str:
        return self.sep.join(self.columns).replace("\t", "<TAB>")


# ---------------------------------------------------------------------------------------------
# strict readers


def _lines(raw: bytes) -> list[bytes]:
    """Physical lines without their end (\\n or \\r\\n). Not ``splitlines()``: latin-1 text decoded to str
    may hold \\x85 or \\x1c-\\x1e, which ``str.splitlines`` would take for line breaks."""
    out = raw.split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in out]


def _data_lines(f: RatingsFile, raw: bytes) -> list[tuple[int, bytes]]:
    """(1-based line number, line) of every data row, as the CSV reader counts rows: blank lines are skipped."""
    rows = [(n, ln) for n, ln in enumerate(_lines(raw), 1) if ln]
    return rows[1:] if f.header else rows


def _header(f: RatingsFile, raw: bytes) -> list[str]:
    first = next((ln for ln in _lines(raw) if ln), b"")
    # RecBole headers name each column name:type (user_id:token); csv headers have no type
    return [c.decode("utf-8", "replace").split(":")[0].strip() for c in first.split(f.sep.encode())]


def _first_bad_line(f: RatingsFile, raw: bytes) -> DataError | None:
    """The first line that the fast reader cannot take, described; None if every line is well formed."""
    sep = f.sep.encode()
    names = _header(f, raw) if f.header else list(f.columns)
    missing = [c for c in f.columns if c not in names]
    if missing:
        return DataError(f"{f.path}, line 1", missing[0], f"column is missing from the header (found: "
                         f"{', '.join(names)})", f"the header must name {', '.join(f.columns)}")
    where = [names.index(c) for c in f.columns]
    last = len(_lines(raw))
    for n, line in _data_lines(f, raw):
        fields = line.split(sep)
        if len(fields) != len(names):
            problem = f"{len(fields)} field(s) where {len(names)} are expected ({f.layout})"
            text = line.decode("latin-1")
            others = [s for s in _OTHER_SEPARATORS if s != f.sep and s in text and s not in f.sep]
            if n == last and not raw.endswith(b"\n"):
                problem += "; the file ends inside this line (truncated?)"
                fix = "restore the whole file, or delete the cut line"
            elif len(fields) == 1 and others:
                problem += f"; the fields look separated by {others[0]!r}, not {f.sep!r}"
                fix = f"write the file with {f.sep!r} between fields"
            else:
                fix = _FIX_LINE
            return DataError(f"{f.path}, line {n}", None, f"{problem}: {text[:80]!r}", fix)
        for name, i, kind in zip(f.columns, where, ("id", "id", "rating", "stamp")):
            v = fields[i].strip()
            if kind == "id" and not _ID.fullmatch(v):
                return DataError(f"{f.path}, line {n}", name, f"{v.decode('latin-1')!r} is not a non-negative "
                                 "integer id", _FIX_LINE)
            if kind == "stamp" and not _STAMP.fullmatch(v):
                return DataError(f"{f.path}, line {n}", name, f"{v.decode('latin-1')!r} is not a Unix time in "
                                 "seconds", _FIX_LINE)
            if kind == "rating":
                try:
                    ok = math.isfinite(float(v))
                except ValueError:
                    ok = False
                if not ok:
                    return DataError(f"{f.path}, line {n}", name, f"{v.decode('latin-1')!r} is not a number",
                                     _FIX_LINE)
    return None


def _line_of_row(f: RatingsFile, raw: bytes, row: int) -> int:
    return _data_lines(f, raw)[row][0]


def _ids(col: pa.ChunkedArray) -> np.ndarray | None:
    """Non-negative integers as int64, or None if the column holds anything else (nulls, text, fractions)."""
    if col.null_count:
        return None
    tp = col.type
    if pa.types.is_integer(tp):
        a = col.to_numpy().astype(np.int64)
    elif pa.types.is_floating(tp):
        x = col.to_numpy()
        if not (np.isfinite(x).all() and (x == np.round(x)).all()):
            return None
        a = x.astype(np.int64)
    else:
        return None
    return a if (a >= 0).all() else None


def _numbers(col: pa.ChunkedArray) -> np.ndarray | None:
    if col.null_count or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return None
    x = col.to_numpy().astype(np.float64)
    return x.astype(np.float32) if np.isfinite(x).all() else None


def read_ratings(f: RatingsFile) -> Ratings:
    """The four rating fields of ``f``, every line checked (see the module docstring)."""
    raw = f.path.read_bytes()
    # '::' is two characters, which the CSV reader cannot split on; \x1f (unit separator) never occurs in text
    data, delim = (raw.replace(b"::", b"\x1f"), "\x1f") if f.sep == "::" else (raw, f.sep)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=None if f.header else list(f.columns), use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delim, quote_char='"' if f.sep == "," else False),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
        if f.header:
            table = table.rename_columns([c.split(":")[0].strip() for c in table.column_names])
    except pa.ArrowInvalid as e:
        err = _first_bad_line(f, raw)
        raise (err or DataError(f.path, None, f"not a {f.layout} file ({str(e).splitlines()[0]})")) from None
    user = item = rating = ts = None
    if all(c in table.column_names for c in f.columns):
        cu, ci, cr, ct = (table[c] for c in f.columns)
        user, item, rating, ts = _ids(cu), _ids(ci), _numbers(cr), _ids(ct)
    if user is None or item is None or rating is None or ts is None:
        err = _first_bad_line(f, raw)
        if err is None:  # the fast reader and the line scan disagree: say what the reader saw
            err = DataError(f.path, None, f"columns {table.column_names} with types {table.schema.types} do not "
                            f"read as {f.layout} (non-negative integer ids and time, a numeric rating)")
        raise err
    _check_timestamps(f, raw, ts)
    return Ratings(user, item, rating, ts)


def _check_timestamps(f: RatingsFile, raw: bytes, ts: np.ndarray) -> None:
    """Refuse timestamps that lie more than _FAR from the bulk of the ratings (see _FAR)."""
    if not len(ts):
        return
    u = np.unique(ts)
    starts = u[1:][np.diff(u) > _FAR]  # first value of each group after the first
    if not len(starts):
        return
    group = np.searchsorted(starts, ts, side="right")  # [N] 0 .. len(starts)
    counts = np.bincount(group)
    bulk = int(np.argmax(counts))
    far = np.flatnonzero(counts < _FAR_SHARE * len(ts))
    far = far[far != bulk]
    if not len(far):
        return
    rows = np.flatnonzero(np.isin(group, far))
    first = int(rows[0])
    lo, hi = ts[group == bulk].min(), ts[group == bulk].max()
    line = _line_of_row(f, raw, first)
    cut = "; the file ends inside this line (truncated?)" if line == len(_lines(raw)) and not raw.endswith(b"\n") \
        else ""
    raise DataError(f"{f.path}, line {line}", f.columns[3],
                    f"{int(ts[first])} ({_date(int(ts[first]))}) is years away from the other ratings "
                    f"({_date(lo)}..{_date(hi)}; {len(rows)} rating(s) like it){cut}",
                    "a timestamp cut short or with a digit too many would shift every day: fix or delete that line")


def _decode(raw: bytes) -> str:
    """UTF-8 if the file is valid UTF-8, else latin-1 (GroupLens's own encoding for u.item and movies.dat)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _movie(item: int, title: str, year: str | None, genres: list[str]) -> tuple[int, str, str]:
    m = _YEAR.search(title)
    if m and not year:
        year = m.group(1)
    base = _YEAR.sub("", title).strip()
    text = f"{base} ({year})" if year else base
    return item, f"{text}. Genres: {', '.join(g for g in genres if g)}", text


def _movies(rows: list[tuple[int, str, str]], path: Path | None) -> Movies:
    ids = np.array([r[0] for r in rows], np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(path, "item_id", f"movie {int(uniq[counts > 1][0])} is listed twice", "keep one line per movie")
    return Movies(ids, [r[1] for r in rows], [r[2] for r in rows])


def _read_listing(path: Path, sep: str, n_fields: int, layout: str,
                  parse: Callable[[list[str]], tuple[int, str, str]]) -> Movies:
    """A ``sep``-separated movie list (u.item, movies.dat), one movie a line, every line checked."""
    rows = []
    for n, line in enumerate(_lines(path.read_bytes()), 1):
        if not line:
            continue
        text = _decode(line)
        f = text.split(sep)
        if len(f) < n_fields:
            raise DataError(f"{path}, line {n}", None, f"{len(f)} field(s) where {n_fields} are expected ({layout}): "
                            f"{text[:80]!r}", _FIX_LINE)
        if not _ID.fullmatch(f[0].strip().encode()):
            raise DataError(f"{path}, line {n}", "movie", f"{f[0]!r} is not a non-negative integer id", _FIX_LINE)
        rows.append(parse(f))
    return _movies(rows, path)


@dataclass(frozen=True)
class Source:
    """What ``read_movielens`` found under a folder."""

    name: str  # ml-100k, ml-1m, the RecBole stem, the folder name of a csv layout
    ratings: Path
    movies: Path | None  # None: no titles (then only --embeddings FILE can give content)
    other: tuple[Path, ...] = ()  # files of the layout that semid does not use (users.dat, u.user)


def read_movielens(path: Path) -> tuple[Source, Ratings, Movies]:
    """Detect the layout under ``path`` and read ratings and movies."""
    path = Path(path)
    if not path.is_dir():
        raise SemidError(f"{path} is not a directory (give the folder that holds the MovieLens files)")
    recbole = sorted(path.glob("*.inter"))
    if (path / "u.data").exists():
        ratings = read_ratings(RatingsFile(path / "u.data", "\t", ("user", "item", "rating", "timestamp")))
        movies = Movies(np.zeros(0, np.int64), [], [])
        if (path / "u.item").exists():
            movies = _read_listing(path / "u.item", "|", 24, "movie|title|release date|video release date|url|19 "
                                   "genre flags", lambda f: _movie(int(f[0]), f[1], None, [
                                       g for g, x in zip(_ML100K_GENRES, f[5:24]) if x.strip() == "1"]))
        return Source("ml-100k", path / "u.data", _exists(path / "u.item"), _existing(path, "u.user")), ratings, movies
    if recbole:
        inter = recbole[0]
        ratings = read_ratings(RatingsFile(inter, "\t", ("user_id", "item_id", "rating", "timestamp"), header=True))
        item_file = inter.with_suffix(".item")
        rows = []
        if item_file.exists():
            it = _csv(item_file)
            it = it.rename_columns([c.split(":")[0] for c in it.column_names])
            if "item_id" not in it.column_names:
                raise DataError(item_file, "item_id", f"column is missing (found: {', '.join(it.column_names)})")
            ids = to_int64(it["item_id"], item_file, "item_id")
            titles = it["movie_title"].to_pylist() if "movie_title" in it.column_names else [""] * len(ids)
            years = [str(y) for y in it["release_year"].to_pylist()] if "release_year" in it.column_names \
                else [None] * len(ids)
            classes = it["class"].to_pylist() if "class" in it.column_names else [""] * len(ids)
            rows = [_movie(int(i), str(ti), y, str(c).split()) for i, ti, y, c in zip(ids, titles, years, classes)]
        return Source(inter.stem, inter, _exists(item_file), _existing(path, inter.stem + ".user")), ratings, \
            _movies(rows, item_file)
    if (path / "ratings.dat").exists():
        ratings = read_ratings(RatingsFile(path / "ratings.dat", "::", ("user", "movie", "rating", "timestamp")))
        movies = Movies(np.zeros(0, np.int64), [], [])
        if (path / "movies.dat").exists():
            movies = _read_listing(path / "movies.dat", "::", 3, "movie::title::genres",
                                   lambda f: _movie(int(f[0]), f[1], None, f[2].split("|")))
        return Source("ml-1m" if _looks_1m(path) else path.name, path / "ratings.dat", _exists(path / "movies.dat"),
                      _existing(path, "users.dat", "tags.dat")), ratings, movies
    if (path / "ratings.csv").exists():
        ratings = read_ratings(RatingsFile(path / "ratings.csv", ",", ("userId", "movieId", "rating", "timestamp"),
                                           header=True))
        rows = []
        if (path / "movies.csv").exists():
            m = _csv(path / "movies.csv", ",")
            for c in ("movieId", "title", "genres"):
                if c not in m.column_names:
                    raise DataError(path / "movies.csv", c, f"column is missing (found: {', '.join(m.column_names)})")
            ids = to_int64(m["movieId"], path / "movies.csv", "movieId")
            for i, ti, g in zip(ids.tolist(), m["title"].to_pylist(), m["genres"].to_pylist()):
                rows.append(_movie(int(i), ti, None, [] if g == "(no genres listed)" else g.split("|")))
        return Source(path.name, path / "ratings.csv", _exists(path / "movies.csv"),
                      _existing(path, "tags.csv", "links.csv")), ratings, _movies(rows, path / "movies.csv")
    raise SemidError(f"{path}: no MovieLens files found (expected u.data, *.inter, ratings.dat or ratings.csv)")


def _looks_1m(path: Path) -> bool:
    """ml-1m and ml-10m share the .dat layout; ml-10m has no users.dat."""
    return (path / "users.dat").exists() or path.name == "ml-1m"


def _exists(p: Path) -> Path | None:
    return p if p.exists() else None


def _existing(folder: Path, *names: str) -> tuple[Path, ...]:
    return tuple(folder / n for n in names if (folder / n).exists())


def _csv(path: Path, delimiter: str = "\t") -> pa.Table:
    try:
        return pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if delimiter == "," else False),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    except pa.ArrowInvalid as e:
        raise DataError(path, None, f"not a readable {'csv' if delimiter == ',' else 'tab-separated'} file "
                        f"({str(e).splitlines()[0]})", _FIX_LINE) from None


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


# ---------------------------------------------------------------------------------------------
# the import


def parse_date(value: str | date | None, flag: str) -> int | None:
    """``YYYY-MM-DD`` -> Unix seconds of that day's UTC midnight."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.strptime(value, "%Y-%m-%d").date()
        except ValueError:
            raise SemidError(f"{flag} {value!r} is not a date (write YYYY-MM-DD, e.g. 2000-04-25)") from None
    return int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp())


def _date(ts: int | np.integer) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%d")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that cannot be written before any slow work (embedding) is done."""
    if out.exists() and not overwrite:
        raise SemidError(f"{out} already exists (pass --overwrite to replace it, or choose another --out)")
    for p in out.parents:
        if p.exists():
            if not p.is_dir():
                raise SemidError(f"{out}: cannot write ({p} is not a directory)")
            break


def import_movielens(path: Path, out: Path | None = None, *, embeddings: Path | None = None,
                     text_model: str | None = None, min_rating: float = 4.0, period_days: int = 1,
                     since: str | date | None = None, until: str | date | None = None,
                     drop_missing: bool = False, overwrite: bool = False, cache_dir: Path | None = None,
                     log: Callable[[str], None] | None = None) -> Path:
    """Import the MovieLens folder ``path`` as a corpus at ``out``; corpus.json's ``import`` records what was kept
    and dropped (``import_summary`` renders it). ``text_model``: ``minilm`` or a local sentence-transformers
    directory, whose embeddings are cached in ``cache_dir`` (see ``semid.datamodules.text_embeddings``)."""
    say = log or (lambda _: None)
    if period_days < 1:
        raise SemidError(f"--period-days must be an integer >= 1 (got {period_days})")
    if not math.isfinite(min_rating):
        raise SemidError(f"--min-rating must be a finite number (got {min_rating})")
    lo, hi = parse_date(since, "--since"), parse_date(until, "--until")
    if lo is not None and hi is not None and hi < lo:
        raise SemidError(f"--until {until} is before --since {since}")
    if embeddings is not None and text_model is not None:
        raise SemidError("give --embeddings FILE or --text-model, not both")
    model = None
    if text_model is not None:  # a missing extra or a wrong model name is said before the files are read
        from semid.datamodules.text_embeddings import resolve_text_model

        model = resolve_text_model(str(text_model))
    src, r, movies = read_movielens(Path(path))
    if len(r.user) == 0:
        raise DataError(src.ratings, None, "no ratings found")
    out = Path(out or Path("corpora") / src.name)
    _check_out(out, overwrite)
    s: dict[str, Any] = {  # corpus.json's import record (JSON)
        "dataset": src.name, "ratings_file": str(src.ratings), "movies_file": str(src.movies) if src.movies else None,
        "unused_files": [str(p) for p in src.other], "ratings_read": len(r.user),
        "users_read": int(len(np.unique(r.user))), "movies_rated": int(len(np.unique(r.item))),
        "movies_listed": int(len(movies.item)), "first_rating": _date(r.ts.min()), "last_rating": _date(r.ts.max()),
        "since": _date(lo) if lo is not None else None, "until": _date(hi) if hi is not None else None,
        "min_rating": min_rating, "period_days": period_days}

    # the date window (until is inclusive: ratings before the next day's midnight)
    before = r.ts < lo if lo is not None else np.zeros(len(r.ts), bool)
    after = r.ts >= hi + DAY if hi is not None else np.zeros(len(r.ts), bool)
    s["dropped_before_since"], s["dropped_after_until"] = int(before.sum()), int(after.sum())
    keep = ~(before | after)
    if not keep.any():
        raise DataError(src.ratings, None, f"no ratings between {s['since'] or 'the first'} and "
                        f"{s['until'] or 'the last'} (the file's ratings span {s['first_rating']}..{s['last_rating']})",
                        "choose --since/--until inside that span")
    # every movie rated at all (before the window): a listed movie outside it was never rated
    s["movies_never_rated"] = int((~np.isin(movies.item, np.unique(r.item))).sum())
    r = Ratings(r.user[keep], r.item[keep], r.rating[keep], r.ts[keep])
    rated = np.unique(r.item)
    s["movies_rated_only_outside_window"] = int(s["movies_rated"]) - len(rated)

    # content: an embedding file, or text embedded by semid
    if embeddings is None and text_model is None:
        found = sorted(Path(path).glob("item_embeddings*.parquet"))
        if not found:
            raise SemidError(f"{path}: no content embeddings (pass --text-model minilm to compute them from the "
                             "titles, --text-model DIR for a local sentence-transformers model, or --embeddings "
                             "FILE.parquet with item_id, embedding)")
        embeddings = found[0]
    emb: np.ndarray | None = None
    if embeddings is not None:
        emb_ids, emb = load_embeddings(Path(embeddings))
        order = np.argsort(emb_ids)
        emb_ids, emb = emb_ids[order], emb[order]
        missing_from: object = embeddings
        s["embeddings"] = {"source": "file", "file": str(embeddings),
                           "fingerprint": fingerprint_file(embeddings), "dim": int(emb.shape[1])}
    else:
        if not len(movies.item):
            raise DataError(src.movies or src.ratings, None, "no movie titles found to embed",
                            "pass --embeddings FILE.parquet with item_id, embedding")
        emb_ids, missing_from = np.sort(movies.item), src.movies
    # checked before embedding, which takes minutes on a large catalogue
    have = np.isin(rated, emb_ids)
    s["movies_without_embedding"], s["dropped_without_embedding"] = 0, 0
    if not have.all():
        missing = rated[~have]
        what = "embedding" if embeddings is not None else "title"
        if not drop_missing:
            raise DataError(missing_from, "item_id", f"{len(missing)} rated item(s) have no {what}, e.g. "
                            f"{int(missing[0])}", "pass --drop-missing to drop them")
        keep = np.isin(r.item, emb_ids)
        s["movies_without_embedding"], s["dropped_without_embedding"] = int(len(missing)), int((~keep).sum())
        r = Ratings(r.user[keep], r.item[keep], r.rating[keep], r.ts[keep])
        rated = rated[have]
    if emb is None:  # embed only the movies the corpus keeps, in item order
        from semid.datamodules.text_embeddings import embed_texts

        assert model is not None
        text_of = dict(zip(movies.item.tolist(), movies.text))
        texts = [text_of[int(i)] for i in rated]
        say(f"embedding {len(texts):,} movie texts ('{texts[0]}', ...) with {model.name}")
        emb, report = embed_texts(model, texts, cache_dir=cache_dir)
        emb_ids = rated
        s["embeddings"] = report.as_dict()

    # order events by (user, time) for the watch item, then by time for days
    o = np.lexsort((r.item, r.ts, r.user))
    user, item, rating, ts = r.user[o], r.item[o], r.rating[o], r.ts[o]
    same_user = np.r_[False, user[1:] == user[:-1]]
    watch = np.where(same_user, np.r_[-1, item[:-1]], -1)
    origin = lo if lo is not None else int(ts.min()) // DAY * DAY  # UTC midnight: periods are calendar days
    calendar = (ts - origin) // (DAY * period_days)
    # periods without any rating are dropped so that days are consecutive (sequential training)
    present = np.unique(calendar)
    day = np.searchsorted(present, calendar).astype(np.int32)
    first_day = _group_min(item, day)
    click = (rating >= min_rating).astype(np.int8)
    engaged = (rating >= 5).astype(np.int8)
    if not click.any():
        raise SemidError(f"--min-rating {min_rating:g} leaves no clicks (ratings range {rating.min():g}.."
                         f"{rating.max():g})")

    # new movies per period and their ratings there: the CTR/1D slice of an evaluation on that period
    new_item = first_day[np.searchsorted(rated, item)] == day
    end = min(int(ts.max()), hi + DAY - 1 if hi is not None else int(ts.max()))
    s.update({"ratings_kept": int(len(user)), "clicks": int(click.sum()), "below_min_rating": int((click == 0).sum()),
              "engaged": int(engaged.sum()), "users_kept": int(len(np.unique(user))), "movies_kept": int(len(rated)),
              "periods": int(len(present)), "empty_periods_dropped": int(present[-1] - present[0] + 1 - len(present)),
              "first_period_start": _date(origin + int(present[0]) * DAY * period_days),
              "last_period_start": _date(origin + int(present[-1]) * DAY * period_days),
              "last_period_days": int(min(period_days, (end - origin) // DAY - int(present[-1]) * period_days + 1)),
              "new_movies_per_period": np.bincount(first_day, minlength=len(present)).tolist(),
              "new_movie_ratings_per_period": np.bincount(day[new_item], minlength=len(present)).tolist()})

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
        source = ({"embeddings": str(embeddings), "embeddings_fingerprint": s["embeddings"]["fingerprint"]}
                  if embeddings is not None else
                  {"text_model": str(text_model), "text_model_fingerprint": s["embeddings"]["text_model_fingerprint"]})
        return w.close({"source": "movielens", "dataset": src.name, "min_rating": min_rating,
                        "period_days": period_days, "since": s["since"], "until": s["until"],
                        "n_users": int(s["users_kept"]), "empty_periods_dropped": s["empty_periods_dropped"],
                        "first_timestamp": int(ts.min()), "day_origin": int(origin), **source, "import": s})


def _group_min(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Minimum of ``values`` per unique key, in ascending key order."""
    o = np.lexsort((values, keys))
    k = keys[o]
    start = np.r_[0, np.flatnonzero(k[1:] != k[:-1]) + 1]
    return values[o][start].astype(np.int32)


def import_summary(s: dict[str, Any]) -> list[str]:
    """The lines ``semid data movielens`` prints: what was read, kept and dropped (from corpus.json's ``import``)."""
    n = lambda k: f"{int(s.get(k) or 0):,}"  # noqa: E731
    lines = [f"read {s['ratings_file']}: {n('ratings_read')} ratings of {n('movies_rated')} movies by "
             f"{n('users_read')} users, {s['first_rating']}..{s['last_rating']}"
             + (f"; {s['movies_file']} lists {n('movies_listed')} movies" if s.get("movies_file") else "")]
    if s.get("since") or s.get("until"):
        lines.append(f"window {s.get('since') or s['first_rating']}..{s.get('until') or s['last_rating']}: dropped "
                     f"{n('dropped_before_since')} ratings before it and {n('dropped_after_until')} after it")
    lines.append(f"kept {n('ratings_kept')} ratings by {n('users_kept')} users of {n('movies_kept')} movies: "
                 f"{n('clicks')} clicks (rating >= {s['min_rating']:g}), {n('below_min_rating')} below --min-rating "
                 f"kept as non-clicks; {n('engaged')} engaged (rating 5)")
    gone = [f"{n('movies_never_rated')} listed movies never rated" if s.get("movies_file") else "",
            f"{n('movies_rated_only_outside_window')} rated only outside the window"
            if s.get("since") or s.get("until") else "",
            f"{n('movies_without_embedding')} without an embedding ({n('dropped_without_embedding')} ratings, "
            "--drop-missing)" if s.get("movies_without_embedding") else ""]
    gone = [g for g in gone if g]
    if gone:
        lines.append("movies not in the corpus: " + ", ".join(gone))
    new, new_r = list(s["new_movies_per_period"]), list(s["new_movie_ratings_per_period"])
    last = ", ".join(f"{a} ({b} ratings)" for a, b in zip(new[-4:], new_r[-4:]))
    unit = "day" if s["period_days"] == 1 else f"{s['period_days']} days"
    partial = f"; the last has {s['last_period_days']} day(s)" if s["last_period_days"] != s["period_days"] else ""
    lines.append(f"days: {n('periods')} periods of {unit} from {s['first_period_start']} (last starts "
                 f"{s['last_period_start']}{partial}); {n('empty_periods_dropped')} empty periods dropped; new movies "
                 f"in the last 4: {last}")
    e = s.get("embeddings") or {}
    if e.get("source") == "file":
        lines.append(f"embeddings: {e['file']} ({e['dim']}-d)")
    elif e:
        lines.append(f"embeddings: {e['text_model']} ({e['text_model_name']}, {e['dim']}-d, L2-normalised): "
                     f"{int(e['texts']):,} texts, {int(e['embedded']):,} embedded now, {int(e['cached']):,} from "
                     f"the cache {e['cache']}")
    if s.get("unused_files"):
        lines.append("not used: " + ", ".join(str(p) for p in s["unused_files"]) +
                     " (the corpus format has no user or tag features)")
    return lines
