"""From a stream of interaction blocks to a corpus, in bounded memory: the shared back half of ``semid data import``
(any log) and of its MIND layout.

Pass 1 (``Spill``): each block, already checked and converted (user, catalogue row, Unix seconds, labels), is
bucketed by UTC calendar day into small Parquet files (sorted by time) in a hidden temporary folder next to the
output; memory holds at most ``SPILL_ROWS`` buffered rows plus per-item state and a row count per UTC hour. Pass 2
(``write_corpus``) reads the buckets one corpus period at a time, in order, and writes the day partitions through
``CorpusWriter`` (itself a temporary directory renamed into place at the end): nothing is left behind if any step
fails.

Memory is bounded, not by the log's length: pass 2 holds one *slice* of a period at a time, whole UTC hours
adding up to at most ``SLICE_ROWS`` rows (one hour larger than that is a slice of its own, so the bound is
``max(SLICE_ROWS, the busiest hour)``). A period of at most ``SLICE_ROWS`` rows is one slice, sorted by user then
time; a larger one is written as one part per slice, each sorted by user then time (the same rows and context items
as one slice would give: the previous positive is carried across slices as it is across periods, and a slice
boundary is an hour boundary, so equal timestamps never straddle one). What does grow is per user and per item:
the previous-positive state (16 bytes per user who clicked), text user ids, the first day and popularity per item.

What pass 2 derives, per period (every rule is recorded in corpus.json's ``import``):

* **days**: period = (UTC day - origin) // period_days, origin = ``--since`` or the first kept day; periods without
  any interaction are dropped so that days are consecutive (sequential training), as the MovieLens import does.
* **context item** (``watch_item_id``), unless the log names one: the user's previous positive, i.e. the item of
  their last click with a strictly earlier timestamp (so the candidates of one impression never see each other),
  across periods; before a user's first click in the log, their last item of the prior history if the source
  gives one (MIND's history column), else null.
* **first_day** of an item: the period of its first interaction; 0 for items of the prior history.
* **negative sampling**, only when asked (``negatives = K``): for each positive of period d, K items drawn with
  replacement, with probability proportional to their clicks in periods <= d (popularity, so only items already
  introduced are drawn), from ``numpy.random.default_rng([seed, d])``; a draw equal to the positive's own item is
  dropped. Drawn rows share the positive's user, time and context item, with click = 0 (and engaged = 0).

Example::

    >>> Spill.__name__, write_corpus.__name__
    ('Spill', 'write_corpus')
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from semid.datamodules.corpus import PRIOR_HISTORY_FILE, CorpusWriter
from semid.core.progress import bar
from semid.core.records import JsonObject

DAY = 86400
SPILL_ROWS = 1_000_000  # rows buffered before a flush: ~35 MB of columns (and a copy while flushing)
SLICE_ROWS = 1_000_000  # rows pass 2 holds at once (~150 B each with its sorts and outputs), see the docstring
SPILL_ROW_GROUP = 65_536  # spill files are sorted by time: a slice's read skips other hours' row groups
HOUR = 3600
_NEVER = np.iinfo(np.int64).max


@dataclass
class Block:
    """Checked interactions of one block: catalogue rows for items, -1 for no context item."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64 catalogue row
    ts: np.ndarray  # int64 Unix seconds (or day * 86400 when the log gives days)
    click: np.ndarray  # int8
    seq: np.ndarray  # int64 source row: the order of equal timestamps
    engaged: np.ndarray | None = None  # int8
    context: np.ndarray | None = None  # int64 catalogue row, -1 = none (a log's own context column)


@dataclass
class Spill:
    """Pass 1: blocks bucketed by UTC day into Parquet files under a hidden temporary folder beside ``out``."""

    out: Path
    n_items: int  # catalogue size
    engaged: bool
    context: bool
    root: Path = field(init=False)
    first_day: np.ndarray = field(init=False)  # [n_items] first UTC day of each item (_NEVER: unused)
    rows: int = 0
    clicks: int = 0
    _buffer: list[Block] = field(default_factory=list)
    _buffered: int = 0
    _flushes: int = 0
    _days: set[int] = field(default_factory=set)
    _hours: dict[int, int] = field(default_factory=dict)  # rows per UTC hour (ts // HOUR): pass 2's slices

    def __post_init__(self) -> None:
        parent = self.out.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.spill-", dir=parent))
        self.first_day = np.full(self.n_items, _NEVER, np.int64)

    def add(self, b: Block) -> None:
        if not len(b.user):
            return
        day = b.ts // DAY
        np.minimum.at(self.first_day, b.item, day)
        hours, counts = np.unique(b.ts // HOUR, return_counts=True)
        for h, n in zip(hours.tolist(), counts.tolist()):
            self._hours[h] = self._hours.get(h, 0) + n
        self.rows += len(b.user)
        self.clicks += int(b.click.sum())
        self._buffer.append(b)
        self._buffered += len(b.user)
        if self._buffered >= SPILL_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        cols = {k: np.concatenate([getattr(b, k) for b in self._buffer]) for k in self._columns()}
        # by time (stable: equal times keep their source order), hence by day too: a day's file is sorted by time
        order = np.argsort(cols["ts"], kind="stable")
        day = cols["ts"][order] // DAY
        bounds = np.r_[0, np.flatnonzero(day[1:] != day[:-1]) + 1, len(day)]
        for s, e in zip(bounds[:-1], bounds[1:]):
            d = int(day[s])
            folder = self.root / f"day={d}"
            folder.mkdir(exist_ok=True)
            sel = order[s:e]
            pq.write_table(pa.table({k: v[sel] for k, v in cols.items()}), folder / f"part-{self._flushes}.parquet",
                           compression="none", row_group_size=SPILL_ROW_GROUP)  # written once, read once: speed
            self._days.add(d)
        self._flushes += 1
        self._buffer, self._buffered = [], 0

    def _columns(self) -> list[str]:
        return ["user", "item", "ts", "click", "seq"] + (["engaged"] if self.engaged else []) + \
            (["context"] if self.context else [])

    def days(self) -> list[int]:
        return sorted(self._days)

    def slices(self, days: list[int], max_rows: int) -> list[tuple[int, int] | None]:
        """Time ranges [lo, hi) (Unix seconds, on hour boundaries) that split ``days`` into runs of whole hours of at
        most ``max_rows`` rows each (an hour larger than that alone); ``[None]`` when the days fit in one."""
        hours = [h for d in sorted(days) for h in range(d * 24, d * 24 + 24) if h in self._hours]
        if sum(self._hours[h] for h in hours) <= max_rows:
            return [None]
        out: list[tuple[int, int] | None] = []
        start, acc = hours[0], 0
        for h in hours:
            if acc and acc + self._hours[h] > max_rows:
                out.append((start * HOUR, h * HOUR))
                start, acc = h, 0
            acc += self._hours[h]
        out.append((start * HOUR, (hours[-1] + 1) * HOUR))
        return out

    def read(self, days: list[int], span: tuple[int, int] | None = None,
             columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """The rows of ``days`` (only those with ``span[0] <= ts < span[1]`` when given: row groups of other hours
        are skipped by their statistics)."""
        files = [f for d in days for f in sorted((self.root / f"day={d}").glob("*.parquet"))]
        filters = None if span is None else [("ts", ">=", span[0]), ("ts", "<", span[1])]
        t = pa.concat_tables([pq.read_table(f, columns=columns, filters=filters, partitioning=None) for f in files])
        return {c: t[c].to_numpy() for c in t.column_names}

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class PriorHistory:
    """Clicks from before the log (MIND's history column): per user, catalogue rows, oldest first."""

    user: np.ndarray  # int64, sorted, unique
    offsets: np.ndarray  # int64 [len(user) + 1]
    item: np.ndarray  # int64 catalogue rows


def _previous_positive(user: np.ndarray, ts: np.ndarray, item: np.ndarray, click: np.ndarray,
                       state_users: np.ndarray, state_item: np.ndarray) -> np.ndarray:
    """Per row (rows sorted by user, then time): the item of the user's last click with a strictly earlier time
    in these rows, else the carried state (their last click of earlier periods), else -1."""
    n = len(user)
    idx = np.arange(n)
    last_incl = np.maximum.accumulate(np.where(click == 1, idx, -1))
    new_user = np.r_[True, user[1:] != user[:-1]]
    user_start = np.maximum.accumulate(np.where(new_user, idx, 0))
    new_group = new_user | np.r_[True, ts[1:] != ts[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    prev = np.where(group_start > 0, last_incl[np.maximum(group_start - 1, 0)], -1)
    inside = prev >= user_start
    out = np.where(inside, item[np.maximum(prev, 0)], -1)
    if len(state_users):
        pos = np.searchsorted(state_users, user)
        pos_c = np.minimum(pos, len(state_users) - 1)
        known = state_users[pos_c] == user
        out = np.where(~inside & known, state_item[pos_c], out)
    return out


def _carry(state_users: np.ndarray, state_item: np.ndarray, user: np.ndarray, item: np.ndarray,
           click: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The state after a period (rows sorted by user, time): each user's last clicked item."""
    c = click == 1
    u, it = user[c], item[c]
    if not len(u):
        return state_users, state_item
    last = np.r_[u[1:] != u[:-1], True]
    u, it = u[last], it[last]
    # a merge of two sorted arrays in linear time (a re-sort of all users per slice made long logs superlinear)
    pos = np.searchsorted(state_users, u)
    known = np.zeros(len(u), bool)
    if len(state_users):
        known = state_users[np.minimum(pos, len(state_users) - 1)] == u
    item = state_item.copy()
    item[pos[known]] = it[known]
    fresh = ~known
    return np.insert(state_users, pos[fresh], u[fresh]), np.insert(item, pos[fresh], it[fresh])


def write_corpus(spill: Spill, out: Path, *, item_ids: np.ndarray, embed: Any, period_days: int,
                 origin_day: int | None, negatives: int = 0, seed: int = 0, prior: PriorHistory | None = None,
                 item_extra: dict[str, tuple[pa.DataType, np.ndarray]] | None = None, overwrite: bool = False,
                 meta: JsonObject | None = None, log: Any = None) -> Path:
    """Pass 2: the corpus at ``out``. ``item_ids``: the corpus id of each catalogue row; ``embed(rows)``: float32
    [len(rows), D] for catalogue rows (called once, for the items the corpus keeps); ``item_extra``: more
    items.parquet columns per catalogue row (title, source_id)."""
    spill.flush()
    days = spill.days()
    origin = days[0] if origin_day is None else origin_day
    calendar = (np.array(days, np.int64) - origin) // period_days
    periods = np.unique(calendar)  # the non-empty periods, in order: corpus day i = periods[i]
    used = spill.first_day < _NEVER
    first_day = np.where(used, np.searchsorted(periods, (spill.first_day - origin) // period_days), 0)
    if prior is not None and len(prior.item):
        used[prior.item] = True
        first_day[prior.item] = 0  # clicked before the log: not new on any day of it
    rows = np.flatnonzero(used)
    say = log or (lambda _: None)
    say(f"embedding or reading the content of {len(rows):,} items")
    emb = np.asarray(embed(rows), np.float32)
    extra = item_extra or {}
    state_u = np.zeros(0, np.int64)
    state_i = np.zeros(0, np.int64)
    if prior is not None and len(prior.user):
        has = np.diff(prior.offsets) > 0
        state_u, state_i = prior.user[has], prior.item[prior.offsets[1:][has] - 1]
    popularity = np.zeros(len(spill.first_day), np.int64)
    n_neg = n_neg_dropped = 0
    per_day: list[dict[str, int]] = []
    with CorpusWriter(out, emb.shape[1], overwrite=overwrite, title="title" in extra,
                      item_extra={k: tp for k, (tp, _) in extra.items() if k != "title"},
                      engaged=spill.engaged) as w:
        with bar("writing days", total=len(periods), unit="day") as pb:
            for d, p in enumerate(periods.tolist()):
                period = [day for day, cal in zip(days, calendar.tolist()) if cal == p]
                spans = spill.slices(period, SLICE_ROWS)
                first = spill.read(period, spans[0])
                rng = np.random.default_rng([seed, d])
                cum = np.zeros(0, np.int64)
                if negatives:  # popularity counts all of period d's clicks before any draw of it
                    for k, span in enumerate(spans):
                        c = first if k == 0 else spill.read(period, span, ["item", "click"])
                        np.add.at(popularity, c["item"][c["click"] == 1], 1)
                    cum = np.cumsum(popularity)
                stats = {"rows": 0, "clicks": 0, "sampled_negatives": 0}
                for k, span in enumerate(spans):
                    c, first = (first, None) if k == 0 else (spill.read(period, span), None)
                    state_u, state_i, n = _write_slice(w, d, c, item_ids, spill.context, state_u, state_i,
                                                       negatives, cum, rng)
                    stats["rows"] += n["rows"]
                    stats["clicks"] += n["clicks"]
                    stats["sampled_negatives"] += n["sampled"]
                    n_neg += n["sampled"]
                    n_neg_dropped += n["dropped"]
                    del c
                per_day.append({**stats, "new_items": int((first_day[rows] == d).sum())})
                pb.update(1)
        order = np.argsort(item_ids[rows], kind="stable")
        rows_sorted = rows[order]
        w.write_items(item_ids[rows_sorted], emb[order], first_day[rows_sorted],
                      **{k: v[rows_sorted] for k, (_, v) in extra.items()})
        if prior is not None and len(prior.item):
            write_prior_history(w.tmp, prior, item_ids)
        record: JsonObject = dict(meta or {})
        record["period_days"] = period_days
        record["day_origin"] = int(origin) * DAY
        record["empty_periods_dropped"] = int(periods[-1] - periods[0] + 1 - len(periods))
        record.setdefault("import", {})
        record["import"].update({"periods": len(periods), "per_day": per_day, "items_kept": int(len(rows)),
                                 "rows_read": int(spill.rows)})
        if negatives:
            record["negative_sampling"] = {
                "rule": "per positive of day d: K items drawn with replacement, p ~ clicks on days <= d; a draw "
                        "equal to the positive's item is dropped; rng numpy default_rng([seed, d])",
                "per_positive": negatives, "seed": seed, "sampled": n_neg, "dropped_equal_to_positive": n_neg_dropped}
        return w.close(record)


def _write_slice(w: CorpusWriter, d: int, c: dict[str, np.ndarray], item_ids: np.ndarray, has_context: bool,
                 state_u: np.ndarray, state_i: np.ndarray, negatives: int, cum: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """One slice of corpus day ``d`` (rows in spill order) as a part of that day: sorted by user then time, context
    items, sampled negatives. Returns the carried previous-positive state and the slice's counts."""
    o = np.lexsort((c["seq"], c["ts"], c["user"]))
    c = {k: v[o] for k, v in c.items()}
    if has_context:
        watch = c["context"]
    else:
        watch = _previous_positive(c["user"], c["ts"], c["item"], c["click"], state_u, state_i)
        state_u, state_i = _carry(state_u, state_i, c["user"], c["item"], c["click"])
    cols = {"user": c["user"], "watch": watch, "item": c["item"], "click": c["click"],
            "engaged": c.get("engaged", np.zeros(len(o), np.int8))}
    sampled = dropped = 0
    if negatives:
        pos = cols["click"] == 1
        src = np.repeat(np.flatnonzero(pos), negatives)
        draw = np.searchsorted(cum, rng.integers(0, cum[-1], len(src)), side="right")
        keep = draw != cols["item"][src]
        src, draw = src[keep], draw[keep]
        dropped = int((~keep).sum())
        sampled = len(src)
        # each drawn row right after its positive: a stable sort on the source row
        merged_src = np.r_[np.arange(len(o)), src]
        order = np.argsort(merged_src, kind="stable")
        cols = {"user": cols["user"][merged_src][order], "watch": cols["watch"][merged_src][order],
                "item": np.r_[cols["item"], draw][order],
                "click": np.r_[cols["click"], np.zeros(sampled, np.int8)][order],
                "engaged": np.r_[cols["engaged"], np.zeros(sampled, np.int8)][order]}
    ids_watch = np.where(cols["watch"] >= 0, item_ids[np.maximum(cols["watch"], 0)], -1)
    w.write_impressions(d, {"day": np.full(len(cols["user"]), d, np.int32), "user_id": cols["user"],
                            "watch_item_id": ids_watch, "item_id": item_ids[cols["item"]],
                            "click": cols["click"], "engaged": cols["engaged"]})
    return state_u, state_i, {"rows": int(len(o)), "clicks": int(cols["click"].sum()), "sampled": sampled,
                              "dropped": dropped}


def write_prior_history(folder: Path, prior: PriorHistory, item_ids: np.ndarray) -> None:
    """``prior_history.parquet``: user_id:int64, item_id:int64, one row per click before the log, oldest first per
    user (``UserHistory`` starts from it)."""
    lengths = np.diff(prior.offsets)
    t = pa.table({"user_id": pa.array(np.repeat(prior.user, lengths), pa.int64()),
                  "item_id": pa.array(item_ids[prior.item], pa.int64())})
    pq.write_table(t, folder / PRIOR_HISTORY_FILE)
