"""``semid data import``: any interaction log (CSV, TSV or Parquet) and an items table -> a corpus.

Inputs:

* **the log**: one row per interaction; flags name its columns: ``--user``, ``--item``, ``--time`` (with
  ``--time-format``) or ``--day`` (integer days), ``--label`` (a rule: ``click``, ``rating>=4``,
  ``action:click,buy/skip``), optionally ``--label2`` (the second task, stored as ``engaged``) and ``--context``
  (the context item; by default the user's previous positive, see ``semid.datamodules.log_corpus``);
* **the items table**: ``--item-id`` plus one content source: ``--text COL[,COL...]`` (joined with '. ' and
  embedded with ``--text-model``, MiniLM by default), ``--embedding-column COL`` (a Parquet list column) or
  ``--embeddings FILE.parquet`` (item_id, embedding). Items the log never uses are left out.

Ids: integer ids are kept as they are; text ids (``N123``, ``U9``) are numbered: items by their sorted order in the
items table (the original id is kept in items.parquet's ``source_id``), users in order of first appearance.

A log without ``--label`` is positive-only (every row a click: ratings, purchases) and is refused unless
``--negatives K`` asks for the documented sampling rule; so is a labelled log without a single non-click.

Example::

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "log.csv").write_text("user_id,item_id,time,rating\\n1,10,956620800,5\\n2,11,956707200,2\\n")
    >>> import numpy as np, pyarrow as pa, pyarrow.parquet as pq
    >>> from semid.datamodules.corpus import embedding_array
    >>> pq.write_table(pa.table({"item_id": [10, 11], "embedding": embedding_array(np.eye(2, 4))}),
    ...                d / "emb.parquet")
    >>> out = import_log(d / "log.csv", None, d / "corpus", time="time", label="rating>=4",
    ...                  embeddings=d / "emb.parquet")
    >>> import json; json.loads((out / "corpus.json").read_text())["n_impressions"]
    2
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semid.datamodules.corpus import to_embedding_matrix
from semid.datamodules.log_corpus import DAY, Block, PriorHistory, Spill, write_corpus
from semid.datamodules.log_read import TableFile
from semid.datamodules.log_rules import LabelRule, TimeRule, integers, is_integer_column, parse_date, parse_period
from semid.core.errors import DataError, SemidError
from semid.core.fingerprint import fingerprint_file
from semid.core.progress import bar
from semid.core.records import JsonObject


@dataclass
class Catalog:
    """The items table: each row's id, and how ids in the log find their row."""

    path: Path | None
    ids: np.ndarray  # int64 corpus id per row (sorted ascending)
    keys: pa.Array | None  # text ids per row (sorted), None when the ids are integers
    texts: list[str] | None = None
    titles: list[str] | None = None
    embeddings: np.ndarray | None = None  # float32 [rows, D]

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, col: pa.Array) -> np.ndarray:
        """Catalogue row per value, -1 where the id is not in the table (empty text: -2, no id)."""
        if self.keys is not None:
            s = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
            s = pc.utf8_trim_whitespace(s.fill_null(""))
            r = pc.index_in(s, value_set=self.keys).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            empty = pc.equal(s, "").to_numpy(zero_copy_only=False)
            return np.where(empty, -2, r)
        if pa.types.is_integer(col.type):
            v, empty = col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), \
                col.is_null().to_numpy(zero_copy_only=False)
        else:
            s = pc.utf8_trim_whitespace(col.fill_null(""))
            empty = pc.equal(s, "").to_numpy(zero_copy_only=False)
            ok = pc.match_substring_regex(s, r"^-?[0-9]+$").to_numpy(zero_copy_only=False)
            v = np.full(len(s), -1, np.int64)
            if ok.any():
                v[ok] = pc.cast(s.filter(pa.array(ok)), pa.int64()).to_numpy(zero_copy_only=False)
        pos = np.minimum(np.searchsorted(self.ids, v), len(self.ids) - 1)
        return np.where(empty, -2, np.where(self.ids[pos] == v, pos, -1))


def read_catalog(tf: TableFile | None, *, id_column: str, text: list[str], embedding_column: str | None,
                 embeddings: Path | None) -> Catalog:
    """The items table (catalogue-sized: read whole) with its content source, every id checked."""
    if tf is None:  # ids and content from the embeddings file alone
        from semid.datamodules.movielens import load_embeddings

        assert embeddings is not None
        ids, mat = load_embeddings(embeddings)
        o = np.argsort(ids)
        return Catalog(embeddings, ids[o], None, embeddings=mat[o])
    flags = {"--item-id": id_column, **{"--text": c for c in text}}
    if embedding_column:
        flags["--embedding-column"] = embedding_column
    tf.require(flags)
    cols = tf.read_all(list(dict.fromkeys([id_column, *text] + ([embedding_column] if embedding_column else []))))
    raw = cols[id_column]
    where = tf.where
    if is_integer_column(raw):
        ids = integers(raw, where, id_column)
        keys = None
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
    else:
        s = pc.utf8_trim_whitespace(raw if pa.types.is_string(raw.type) else pc.cast(raw, pa.string()))
        order = np.asarray(pc.array_sort_indices(s), np.int64)
        keys = s.take(pa.array(order))
        ids = np.arange(len(order), dtype=np.int64)
    dup = np.flatnonzero(keys_equal_next(ids if keys is None else keys))
    if len(dup):
        r = int(order[dup[0] + 1])
        raise DataError(where(r), id_column, f"id {raw[r].as_py()!r} is listed twice", "keep one row per item")
    cat = Catalog(tf.path, ids, keys)
    if text:
        parts = [pc.utf8_trim_whitespace(cols[c].fill_null("")).to_pylist() for c in text]
        texts = [". ".join(p for p in vals if p) for vals in zip(*parts)]
        cat.texts = [texts[i] for i in order]
        cat.titles = [parts[0][i] for i in order]
    elif embedding_column:
        mat = to_embedding_matrix(cols[embedding_column], tf.path)
        cat.embeddings = mat[order]
    elif embeddings is not None:  # the table's ids, content from a separate file: every id must have a row there
        from semid.datamodules.movielens import load_embeddings

        e_ids, e_mat = load_embeddings(embeddings)
        if keys is not None:
            raise DataError(embeddings, "item_id", "the items table has text ids, which an embeddings file of int64 "
                            "ids cannot match", "put the embeddings in the items table (--embedding-column)")
        o = np.argsort(e_ids)
        e_ids, e_mat = e_ids[o], e_mat[o]
        pos = np.minimum(np.searchsorted(e_ids, ids), len(e_ids) - 1)
        miss = e_ids[pos] != ids
        if miss.any():
            raise DataError(embeddings, "item_id", f"{int(miss.sum())} item(s) of {tf.path} have no embedding, e.g. "
                            f"{int(ids[miss][0])}", "add their embeddings, or drop them from the items table")
        cat.embeddings = e_mat[pos]
    return cat


def keys_equal_next(keys: np.ndarray | pa.Array) -> np.ndarray:
    if isinstance(keys, np.ndarray):
        return keys[1:] == keys[:-1]
    if len(keys) < 2:
        return np.zeros(0, bool)
    return pc.equal(keys.slice(1), keys.slice(0, len(keys) - 1)).to_numpy(zero_copy_only=False)


class UserIds:
    """Users as int64: integer ids as they are; text ids numbered 0, 1, ... in order of first appearance (decided by
    the first block: a later block of the other kind is refused at its line)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.numeric: bool | None = None
        self.known = pa.array([], pa.string())
        self.new: list[pa.Array] = []

    def __call__(self, col: pa.Array, where: Callable[[int], str]) -> np.ndarray:
        if self.numeric is None:
            self.numeric = is_integer_column(col)
        if self.numeric:
            return integers(col, where, self.column, "user ids are integers from the log's first rows on: keep them "
                            "all integers, or all text")
        s = pc.utf8_trim_whitespace(col if pa.types.is_string(col.type) else pc.cast(col, pa.string()))
        empty = pc.equal(s, "").to_numpy(zero_copy_only=False)
        if empty.any():
            raise DataError(where(int(np.flatnonzero(empty)[0])), self.column, "empty user id", "fill in the user")
        idx = pc.index_in(s, value_set=self.known)
        missing = idx.is_null()
        if missing.true_count if hasattr(missing, "true_count") else pc.any(missing).as_py():
            fresh = pc.unique(s.filter(missing))
            self.known = pa.concat_arrays([self.known, fresh.cast(pa.string())])
            idx = pc.index_in(s, value_set=self.known)
        return idx.to_numpy(zero_copy_only=False).astype(np.int64)


def _check_repeated_header(cols: dict[str, pa.Array], names: dict[str, str], first: int, tf: TableFile) -> None:
    """A row whose user and item fields are the header's names (a file joined with another's header), or a blank
    line (read as a row of empty fields)."""
    if tf.fmt == "parquet":
        return
    blank = None
    for col in names.values():
        e = pc.equal(cols[col], "").to_numpy(zero_copy_only=False)
        blank = e if blank is None else blank & e
    if blank is not None and blank.any():
        raise DataError(tf.where(first + int(np.flatnonzero(blank)[0])), None, "a blank line", "delete that line")
    hit = None
    for col in names.values():
        eq = pc.equal(pc.utf8_trim_whitespace(cols[col]), col).to_numpy(zero_copy_only=False)
        hit = eq if hit is None else hit & eq
    if hit is not None and hit.any():
        i = int(np.flatnonzero(hit)[0])
        raise DataError(tf.where(first + i), None, "a repeated header row inside the file (files joined with their "
                        "headers?)", "delete that line")


def _map_items(cat: Catalog, col: pa.Array, where: Callable[[int], str], name: str, *, nullable: bool,
               drop_missing: bool) -> np.ndarray:
    r = cat.rows(col)
    if not nullable and (r == -2).any():
        raise DataError(where(int(np.flatnonzero(r == -2)[0])), name, "empty item id", "fill in the item")
    missing = r == -1
    if missing.any() and not drop_missing:
        i = int(np.flatnonzero(missing)[0])
        raise DataError(where(i), name, f"item {col[i].as_py()!r} is not in the items table {cat.path}",
                        "add it to the items table, or pass --drop-missing to drop such rows")
    return np.where(r == -2, -1, r)


def import_log(interactions: Path, items: Path | None, out: Path, *, user: str = "user_id", item: str = "item_id",
               time: str | None = None, time_format: str = "unix", day: str | None = None,
               label: str | None = None, label2: str | None = None, context: str | None = None,
               item_id: str | None = None, text: list[str] | str | None = None, embedding_column: str | None = None,
               embeddings: Path | None = None, text_model: str = "minilm", period: str = "day",
               since: str | None = None, until: str | None = None, negatives: int = 0, seed: int = 0,
               encoding: str = "utf-8", fmt: str | None = None, items_format: str | None = None,
               drop_missing: bool = False, overwrite: bool = False, cache_dir: Path | None = None,
               log: Callable[[str], None] | None = None) -> Path:
    """Import ``interactions`` (and the items table ``items``) as a corpus at ``out``; see the module docstring.

    >>> import tempfile, pathlib, numpy as np, pyarrow as pa, pyarrow.parquet as pq
    >>> from semid.datamodules.corpus import embedding_array
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "log.csv").write_text("user_id,item_id,day,click\\n1,10,0,1\\n2,11,0,0\\n1,11,1,1\\n")
    >>> pq.write_table(pa.table({"item_id": [10, 11], "embedding": embedding_array(np.eye(2, 4))}), d / "e.parquet")
    >>> import_log(d / "log.csv", None, d / "corpus", day="day", label="click", embeddings=d / "e.parquet").name
    'corpus'
"""
    say = log or (lambda _: None)
    interactions, out = Path(interactions), Path(out)
    items = Path(items) if items is not None else None
    embeddings = Path(embeddings) if embeddings is not None else None
    # every flag is checked before any file is read
    period_days = parse_period(period)
    texts = [c.strip() for c in text.split(",")] if isinstance(text, str) else list(text or [])
    sources = [bool(texts), embedding_column is not None, embeddings is not None and items is not None]
    if (time is None) == (day is None):
        raise SemidError("name the log's time column with --time COL (and --time-format), or its day column with "
                         "--day COL (one of them)")
    if items is None and embeddings is None:
        raise SemidError("give the items table with --items FILE (with --text or --embedding-column), or "
                         "--embeddings FILE.parquet with item_id, embedding")
    if items is not None and sum(sources) != 1:
        raise SemidError("give the items' content one way: --text COL[,COL], --embedding-column COL or "
                         "--embeddings FILE.parquet")
    if negatives < 0:
        raise SemidError(f"--negatives must be >= 0 (got {negatives})")
    if label is None and not negatives:
        raise SemidError("without --label every row is a positive (a positive-only log): pass --negatives K to "
                         "sample K popularity-weighted non-clicks per positive (recorded in corpus.json), or name "
                         "the label with --label COL / --label 'rating>=4'")
    rule = LabelRule.parse(label, "--label") if label is not None else None
    rule2 = LabelRule.parse(label2, "--label2") if label2 is not None else None
    if day is not None:
        lo = _int_flag(since, "--since") if since is not None else None
        hi = _int_flag(until, "--until") if until is not None else None
    else:
        lo, hi = parse_date(since, "--since"), parse_date(until, "--until")
        lo = lo // DAY if lo is not None else None
        hi = hi // DAY if hi is not None else None
    if lo is not None and hi is not None and hi < lo:
        raise SemidError(f"--until {until} is before --since {since}")
    model = None
    if texts:
        from semid.datamodules.text_embeddings import resolve_text_model

        model = resolve_text_model(text_model)
    if Path(out).exists() and not overwrite:
        raise SemidError(f"{out} already exists (pass --overwrite to replace it, or choose another --out)")

    log_file = TableFile.of(interactions, fmt, encoding)
    names = {"--user": user, "--item": item}
    cols = {"--user": user, "--item": item, **({"--time": time} if time else {"--day": day})}
    for flag, r in (("--label", rule), ("--label2", rule2)):
        if r is not None:
            cols[flag] = r.column
    if context:
        cols["--context"] = context
    log_file.require(cols)
    item_file = TableFile.of(items, items_format, encoding, "--items-format") if items is not None else None
    cat = read_catalog(item_file, id_column=item_id or item, text=texts, embedding_column=embedding_column,
                       embeddings=embeddings)
    time_rule = TimeRule(time, time_format) if time else None
    users = UserIds(user)
    spill = Spill(Path(out), len(cat), engaged=rule2 is not None, context=context is not None)
    s: JsonObject = {"log_file": str(interactions), "items_file": str(items) if items else None,
                     "dropped_before_since": 0, "dropped_after_until": 0, "dropped_unknown_item": 0}
    try:
        with bar("reading the log", unit="row") as pb:
            for first, c in log_file.batches(list(dict.fromkeys(cols.values()))):
                where = (lambda i, f=first: log_file.where(f + i))
                _check_repeated_header(c, names, first, log_file)
                u = users(c[user], where)
                it = _map_items(cat, c[item], where, item, nullable=False, drop_missing=drop_missing)
                if time_rule is not None:
                    ts = time_rule.seconds(c[time], where)
                else:
                    ts = integers(c[day], where, day) * DAY
                click = rule.apply(c[rule.column], where) if rule else np.ones(len(u), np.int8)
                eng = rule2.apply(c[rule2.column], where) if rule2 else None
                ctx = _map_items(cat, c[context], where, context, nullable=True, drop_missing=drop_missing) \
                    if context else None
                keep = it >= 0
                s["dropped_unknown_item"] += int((~keep).sum())
                dday = ts // DAY
                if lo is not None:
                    s["dropped_before_since"] += int((keep & (dday < lo)).sum())
                    keep &= dday >= lo
                if hi is not None:
                    s["dropped_after_until"] += int((keep & (dday > hi)).sum())
                    keep &= dday <= hi
                seq = np.arange(first, first + len(u), dtype=np.int64)
                spill.add(Block(u[keep], it[keep], ts[keep], click[keep], seq[keep],
                                eng[keep] if eng is not None else None, ctx[keep] if ctx is not None else None))
                pb.update(len(u))
        if spill.rows == 0:
            raise DataError(interactions, None, "no interactions kept" + (" in the --since/--until window"
                            if lo is not None or hi is not None else ""), "check the file and the window")
        if rule is not None and not negatives:
            if spill.clicks == spill.rows:
                raise DataError(interactions, rule.column, f"all {spill.rows:,} rows are positives under "
                                f"{rule.describe()} (a positive-only log)", "pass --negatives K to sample "
                                "non-clicks, or a --label rule that leaves negatives")
        if rule is not None and spill.clicks == 0:
            raise DataError(interactions, rule.column, f"no row is a positive under {rule.describe()}",
                            "choose another --label rule")
        s.update({"rows_kept": int(spill.rows), "clicks": int(spill.clicks),
                  "label": rule.describe() if rule else "none: every row is a positive",
                  "label2": rule2.describe() if rule2 else None, "time_format": time_format if time else None,
                  "context": context or "the user's previous positive (strictly earlier time)",
                  "users": int(len(users.known)) if users.numeric is False else None})
        embed, content = _content(cat, model, cache_dir, embeddings, say)
        extra: dict[str, tuple[pa.DataType, np.ndarray]] = {}
        if cat.titles is not None:
            extra["title"] = (pa.string(), np.array(cat.titles, dtype=object))
        if cat.keys is not None:
            extra["source_id"] = (pa.string(), np.array(cat.keys.to_pylist(), dtype=object))
        meta: JsonObject = {"source": "log", "since": since, "until": until, **content, "import": s}
        return write_corpus(spill, Path(out), item_ids=cat.ids, embed=embed, period_days=period_days,
                            origin_day=lo, negatives=negatives, seed=seed, item_extra=extra, overwrite=overwrite,
                            meta=meta, log=say)
    finally:
        spill.cleanup()


def _int_flag(v: str, flag: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise SemidError(f"{flag} {v!r}: with --day, give a day number (e.g. {flag} 3)") from None


def _content(cat: Catalog, model: object, cache_dir: Path | None, embeddings: Path | None,
             say: Callable[[str], None]) -> tuple[Callable[[np.ndarray], np.ndarray], JsonObject]:
    """embed(rows) for the catalogue's content source, and what corpus.json records about it."""
    if cat.texts is not None:
        from semid.datamodules.text_embeddings import embed_texts

        record: JsonObject = {}

        def embed(rows: np.ndarray) -> np.ndarray:
            texts = [cat.texts[int(r)] for r in rows]  # type: ignore[index]
            say(f"embedding {len(texts):,} item texts with {model.name}")  # type: ignore[attr-defined]
            emb, report = embed_texts(model, texts, cache_dir=cache_dir)  # type: ignore[arg-type]
            record.update(report.as_dict())
            return emb

        return embed, {"text_model": model.spec, "text_model_fingerprint": model.fingerprint,  # type: ignore
                       "embeddings": record}
    assert cat.embeddings is not None
    if cat.embeddings.shape[1] == 0:
        raise DataError(cat.path, "embedding", "dimension 0", "give embeddings with at least one value per item")
    rec: JsonObject = {"source": "file" if embeddings else "column", "dim": int(cat.embeddings.shape[1])}
    if embeddings is not None:
        rec["fingerprint"] = fingerprint_file(embeddings)
    mat = cat.embeddings
    return (lambda rows: mat[rows]), {"embeddings": rec}
