"""``semid data import --format mind DIR [DIR ...]``: MIND (Microsoft News Dataset) -> a corpus.

MIND is the public dataset closest to the paper's setting: impressions that list every news item shown with its
click label (real shown-but-not-clicked negatives) and fresh items every day. It cannot be shipped; get it from
https://msnews.github.io (MINDsmall_train.zip, MINDsmall_dev.zip, or the large set) and give the unzipped folders.

Each folder holds two tab-separated files without a header:

* ``behaviors.tsv``: impression id, user id, time (``11/15/2019 8:55:22 AM``, read as UTC), history (the user's
  clicks before the log, oldest first, space-separated news ids), impressions (``N123-1 N456-0``: news id, then
  1 = clicked, 0 = shown and not clicked);
* ``news.tsv``: news id, category, subcategory, title, abstract, url, title entities, abstract entities.

What the import keeps: one corpus row per shown item (clicks and non-clicks alike), in daily partitions (or
``--period``); the news text ``title. abstract`` embedded with MiniLM (``--text-model``); news never shown nor in
any history is left out. Several folders (train and dev) are one log: their news lists are merged by id.

History: the corpus's user history is the user's clicks on earlier days of the log. MIND's history column holds
their clicks *before* the log began, which earlier days cannot cover, so it is kept as the corpus's prior history
(``prior_history.parquet``: user_id, item_id, oldest first), which the ranking data module puts before the
log's clicks; per user it is the history column of their earliest impression (MIND repeats the same list on every
impression of a user in one folder). The same list gives the context item (``watch_item_id``) of a user's
impressions before their first click in the log: its last item. History news get ``first_day`` 0 (they were out
before the log began).

Example::

    >>> BEHAVIORS
    ('impression_id', 'user_id', 'time', 'history', 'impressions')
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semid.datamodules.log_corpus import DAY, Block, PriorHistory, Spill, write_corpus
from semid.datamodules.log_import import Catalog, UserIds, keys_equal_next
from semid.datamodules.log_read import TableFile
from semid.datamodules.log_rules import TimeRule, parse_date, parse_period
from semid.core.errors import DataError, SemidError
from semid.core.progress import bar
from semid.core.records import JsonObject

BEHAVIORS = ("impression_id", "user_id", "time", "history", "impressions")
NEWS = ("news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_TOKEN = r"^(?P<item>[^\s-]+)-(?P<label>[01])$"


def _headerless(path: Path, encoding: str) -> TableFile:
    if not path.is_file():
        raise SemidError(f"{path}: no such file (a MIND folder holds behaviors.tsv and news.tsv)")
    return TableFile(path, "tsv", encoding, header_row=False)


def read_news(folders: list[Path], encoding: str) -> Catalog:
    """Every folder's news.tsv as one catalogue (by news id; the first folder's row wins a repeated id)."""
    ids: list[pa.Array] = []
    texts: list[pa.Array] = []
    titles: list[pa.Array] = []
    for folder in folders:
        tf = _headerless(folder / "news.tsv", encoding)
        for _, c in tf.batches(["news_id", "title", "abstract"], names=list(NEWS)):
            ids.append(pc.utf8_trim_whitespace(c["news_id"]))
            title, abstract = pc.utf8_trim_whitespace(c["title"]), pc.utf8_trim_whitespace(c["abstract"])
            joined = pc.binary_join_element_wise(title, abstract, ". ")
            texts.append(pc.if_else(pc.equal(abstract, ""), title, joined))
            titles.append(title)
    if not ids:
        raise DataError(folders[0] / "news.tsv", None, "no news", "give MIND's news.tsv")
    all_ids = pa.concat_arrays(ids)
    all_texts, all_titles = pa.concat_arrays(texts), pa.concat_arrays(titles)
    # first row of each id (Arrow's sort is stable: file order within an id)
    order = np.asarray(pc.array_sort_indices(all_ids), np.int64)
    keys = all_ids.take(pa.array(order))
    first = np.r_[True, ~keys_equal_next(keys)]
    order = order[first]
    keys = all_ids.take(pa.array(order))
    cat = Catalog(folders[0] / "news.tsv", np.arange(len(order), dtype=np.int64), keys)
    cat.texts = all_texts.take(pa.array(order)).to_pylist()
    cat.titles = all_titles.take(pa.array(order)).to_pylist()
    return cat


def import_mind(folders: list[Path] | Path, out: Path, *, text_model: str = "minilm", period: str = "day",
                since: str | None = None, until: str | None = None, encoding: str = "utf-8",
                overwrite: bool = False, cache_dir: Path | None = None,
                log: Callable[[str], None] | None = None) -> Path:
    """Import MIND folders (each with behaviors.tsv and news.tsv) as a corpus at ``out``; see the module docstring.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "news.tsv").write_text("".join(f"N{i}\\tsports\\tgolf\\tTitle {i}\\tAbstract {i}\\t\\t[]\\t[]\\n"
    ...                                         for i in range(4)))
    >>> _ = (d / "behaviors.tsv").write_text("1\\tU1\\t11/11/2019 9:05:58 AM\\tN0\\tN1-1 N2-0\\n"
    ...                                      "2\\tU2\\t11/12/2019 3:15:00 PM\\tN1\\tN3-0 N2-1\\n")
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):  # loading the text model may print a line
    ...     out = import_mind(d, d / "corpus")
    >>> out.name
    'corpus'
"""
    from semid.datamodules.text_embeddings import embed_texts, resolve_text_model

    say = log or (lambda _: None)
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    period_days = parse_period(period)
    lo, hi = parse_date(since, "--since"), parse_date(until, "--until")
    lo_d = lo // DAY if lo is not None else None
    hi_d = hi // DAY if hi is not None else None
    if lo_d is not None and hi_d is not None and hi_d < lo_d:
        raise SemidError(f"--until {until} is before --since {since}")
    model = resolve_text_model(text_model)
    if Path(out).exists() and not overwrite:
        raise SemidError(f"{out} already exists (pass --overwrite to replace it, or choose another --out)")
    behaviors = [_headerless(f / "behaviors.tsv", encoding) for f in folders]
    cat = read_news(folders, encoding)
    users = UserIds("user_id")
    rule = TimeRule("time", TIME_FORMAT)
    spill = Spill(Path(out), len(cat), engaged=False, context=False)
    # per user: the earliest impression's time, its history text, and where it is (for a message)
    hist_ts: dict[int, int] = {}
    hist_text: dict[int, str] = {}
    hist_where: dict[int, str] = {}
    s: JsonObject = {"folders": [str(f) for f in folders], "impressions_read": 0, "dropped_before_since": 0,
                     "dropped_after_until": 0}
    seq0 = 0
    try:
        with bar("reading behaviors.tsv", unit="impression") as pb:
            for tf in behaviors:
                for first, c in tf.batches(list(BEHAVIORS), names=list(BEHAVIORS)):
                    where = (lambda i, f=first, t=tf: t.where(f + i))
                    u = users(c["user_id"], where)
                    ts = rule.seconds(c["time"], where)
                    _collect_history(u, ts, c["history"], where, hist_ts, hist_text, hist_where)
                    tokens = pc.split_pattern(pc.utf8_trim_whitespace(c["impressions"]), " ")
                    parent = np.asarray(pc.list_parent_indices(tokens), np.int64)
                    flat = pc.list_flatten(tokens)
                    parsed = pc.extract_regex(flat, _TOKEN)
                    bad = parsed.is_null().to_numpy(zero_copy_only=False)
                    if bad.any():
                        i = int(np.flatnonzero(bad)[0])
                        raise DataError(where(int(parent[i])), "impressions", f"{flat[i].as_py()!r} is not "
                                        "NEWSID-1 or NEWSID-0 (MIND's test set has no click labels)",
                                        "give a folder whose impressions carry labels (train or dev)")
                    item = cat.rows(pc.struct_field(parsed, [0]))
                    if (item < 0).any():
                        i = int(np.flatnonzero(item < 0)[0])
                        raise DataError(where(int(parent[i])), "impressions", f"news {flat[i].as_py()!r} is not in "
                                        f"{', '.join(str(f / 'news.tsv') for f in folders)}",
                                        "give the news.tsv of the same MIND folder")
                    click = pc.equal(pc.struct_field(parsed, [1]), "1").to_numpy(zero_copy_only=False).astype(np.int8)
                    t = ts[parent]
                    d = t // DAY
                    keep = np.ones(len(t), bool)
                    if lo_d is not None:
                        s["dropped_before_since"] += int((d < lo_d).sum())
                        keep &= d >= lo_d
                    if hi_d is not None:
                        s["dropped_after_until"] += int((d > hi_d).sum())
                        keep &= d <= hi_d
                    s["impressions_read"] += len(u)
                    spill.add(Block(u[parent][keep], item[keep], t[keep], click[keep], (seq0 + first + parent)[keep]))
                    pb.update(len(u))
                seq0 += 1 << 40  # the next folder's rows after this one's
        if spill.rows == 0:
            raise DataError(behaviors[0].path, None, "no impressions kept", "check the files and --since/--until")
        prior = _prior_history(cat, hist_text, hist_where)
        s.update({"shown": int(spill.rows), "clicks": int(spill.clicks),
                  "users": int(len(users.known)), "users_with_prior_history": int((np.diff(prior.offsets) > 0).sum()),
                  "prior_history_clicks": int(len(prior.item)),
                  "history_rule": "MIND's history column of each user's earliest impression, as clicks before day 0 "
                                  "(prior_history.parquet); it also gives the context item before the user's first "
                                  "click in the log"})
        record: JsonObject = {}

        def embed(rows: np.ndarray) -> np.ndarray:
            texts = [cat.texts[int(r)] for r in rows]  # type: ignore[index]
            say(f"embedding {len(texts):,} news texts (title. abstract) with {model.name}")
            emb, report = embed_texts(model, texts, cache_dir=cache_dir)
            record.update(report.as_dict())
            return emb

        extra = {"title": (pa.string(), np.array(cat.titles, dtype=object)),
                 "source_id": (pa.string(), np.array(cat.keys.to_pylist(), dtype=object))}  # type: ignore[union-attr]
        meta: JsonObject = {"source": "mind", "since": since, "until": until, "text_model": text_model,
                            "text_model_fingerprint": model.fingerprint, "embeddings": record, "import": s}
        return write_corpus(spill, Path(out), item_ids=cat.ids, embed=embed, period_days=period_days,
                            origin_day=lo_d, prior=prior, item_extra=extra, overwrite=overwrite, meta=meta, log=say)
    finally:
        spill.cleanup()


def _collect_history(u: np.ndarray, ts: np.ndarray, history: pa.Array, where: Callable[[int], str],
                     hist_ts: dict[int, int], hist_text: dict[int, str], hist_where: dict[int, str]) -> None:
    """Keep, per user, the history text of their earliest impression seen so far."""
    o = np.lexsort((ts, u))
    first = o[np.r_[True, u[o][1:] != u[o][:-1]]]
    for i in first.tolist():
        user, t = int(u[i]), int(ts[i])
        if user not in hist_ts or t < hist_ts[user]:
            hist_ts[user], hist_text[user], hist_where[user] = t, history[i].as_py() or "", where(i)


def _prior_history(cat: Catalog, hist_text: dict[int, str], hist_where: dict[int, str]) -> PriorHistory:
    users = np.array(sorted(hist_text), np.int64)
    lists = [hist_text[int(u)].split() for u in users]
    lengths = np.array([len(x) for x in lists], np.int64)
    flat = pa.array([n for x in lists for n in x], pa.string())
    rows = cat.rows(flat) if len(flat) else np.zeros(0, np.int64)
    if (rows < 0).any():
        i = int(np.flatnonzero(rows < 0)[0])
        u = int(users[np.searchsorted(np.cumsum(lengths), i, side="right")])
        raise DataError(hist_where[u], "history", f"news {flat[i].as_py()!r} is not in news.tsv",
                        "give the news.tsv of the same MIND folder")
    return PriorHistory(users, np.r_[0, np.cumsum(lengths)].astype(np.int64), rows.astype(np.int64))
