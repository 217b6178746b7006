"""Corpus validator: every check of the data contract, each failure one ``DataError`` naming file and field."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodules.corpus import (
    META_FILE,
    Corpus,
    Items,
    _ranges,
    _read_parquet,
    _require,
    compute_fingerprint,
    to_int64,
)
from semid.core.errors import DataError
from semid.core.fingerprint import fingerprint_bytes


@dataclass
class ValidationReport:
    n_items: int
    dim: int
    days: list[int]
    n_impressions: int
    warnings: list[str] = field(default_factory=list)
    # same day, user, watch item and item: allowed (a user may see an item twice), reported
    repeated_impressions: int = 0


def validate_items(corpus: Corpus) -> Items:
    items = corpus.read_items()  # types, dimension and finiteness are checked while reading
    p = corpus.items_path
    if len(items) == 0:
        raise DataError(p, "item_id", "no items", "a corpus needs at least one item")
    if (items.item_id < 0).any():
        raise DataError(p, "item_id", f"{int((items.item_id < 0).sum())} negative id(s)", "ids must be >= 0")
    dup = items.item_id[1:][items.item_id[1:] == items.item_id[:-1]]
    if len(dup):
        raise DataError(p, "item_id", f"{len(dup)} duplicate id(s), e.g. {int(dup[0])}",
                        "keep one row per item")
    if (items.first_day < 0).any():
        raise DataError(p, "first_day", "negative days", "days count from 0")
    return items


def validate_day(corpus: Corpus, day: int, items: Items, report: ValidationReport) -> None:
    rows: list[tuple[Path, np.ndarray]] = []  # each file's impressions as one row per impression
    for f in corpus.day_files()[day]:
        rows.append((f, _validate_file(f, day, items, report)))
    distinct = _refuse_copied_rows(corpus, day, rows)
    # repeats of (user, watch item, item), whatever their labels: counted on the distinct rows, not all of them
    report.repeated_impressions += sum(len(r) for _, r in rows) - len(np.unique(distinct[:, :3], axis=0))


def _validate_file(f: Path, day: int, items: Items, report: ValidationReport) -> np.ndarray:
    """Checks one day file; returns its rows as ``[user, watch, item, click, engaged]`` int64."""
    t = _read_parquet(f)
    _require(t, f, ("day", "user_id", "item_id", "click"))
    if t.num_rows == 0:
        raise DataError(f, None, "file has no rows", "drop the empty file or regenerate the day")
    dcol = to_int64(t["day"], f, "day")
    if (dcol != day).any():
        raise DataError(f, "day", f"values {sorted(set(dcol.tolist()))[:3]} differ from its partition "
                        f"day={day:04d}", "move the rows to their day's directory")
    col = {name: to_int64(t[name], f, name) for name in ("user_id", "item_id")}  # each column converted once
    for name in ("user_id", "item_id"):
        if (col[name] < 0).any():
            raise DataError(f, name, "negative ids", "ids must be >= 0")
    cand = col["item_id"]
    idx = items.index_of(cand)
    if (idx < 0).any():
        unknown = np.unique(cand[idx < 0])
        raise DataError(f, "item_id", f"{len(unknown)} id(s) not in items.parquet, e.g. {int(unknown[0])}",
                        "add the items or drop those impressions")
    early = items.first_day[idx] > day
    if early.any():
        raise DataError(f, "item_id", f"{int(early.sum())} impression(s) of items before their first_day",
                        "first_day must be <= the day of the item's first impression")
    col["watch_item_id"] = np.full(t.num_rows, -1, np.int64)
    if "watch_item_id" in t.column_names:
        w = col["watch_item_id"] = to_int64(t["watch_item_id"], f, "watch_item_id", nullable=True)
        wi = items.index_of(w[w >= 0])
        if (wi < 0).any():
            raise DataError(f, "watch_item_id", f"{int((wi < 0).sum())} id(s) not in items.parquet",
                            "use null for 'no watch item'")
    col["engaged"] = np.zeros(t.num_rows, np.int64)
    for label in ("click", "engaged"):
        if label in t.column_names:
            v = col[label] = to_int64(t[label], f, label)
            if not np.isin(v, (0, 1)).all():
                raise DataError(f, label, "labels other than 0/1", "store binary labels as int8 0/1")
    if (col["engaged"] > col["click"]).any():
        report.warnings.append(f"{f}: engaged=1 on rows with click=0")
    report.n_impressions += t.num_rows
    return np.stack([col[c] for c in ("user_id", "watch_item_id", "item_id", "click", "engaged")], axis=1)


def _refuse_copied_rows(corpus: Corpus, day: int, rows: list[tuple[Path, np.ndarray]]) -> np.ndarray:
    """A day written twice (a file copied, or an import run twice) would silently double-weight its impressions.

    A user may really see the same item twice a day (14% of the tiny synthetic corpus's impressions repeat one), so
    repeats alone are allowed; what cannot happen by chance is a file holding exactly another file's rows,
    or a day whose every distinct impression occurs the same k >= 2 times. Returns the day's distinct rows.
    """
    seen: dict[str, Path] = {}
    for f, r in rows:
        key = fingerprint_bytes(r[np.lexsort(r.T[::-1])])  # a digest: the files' rows are not held twice
        if key in seen:
            raise DataError(f, None, f"holds the same {len(r):,} impressions as {seen[key].name} (the day was "
                            "written twice?)", "delete the copy")
        seen[key] = f
    all_rows = np.concatenate([r for _, r in rows])
    distinct, counts = np.unique(all_rows, axis=0, return_counts=True)
    if len(all_rows) >= 4 and counts.min() >= 2 and (counts == counts[0]).all():
        raise DataError(corpus.impressions_path / f"day={day:04d}", None, f"every impression occurs exactly "
                        f"{int(counts[0])} times (the day's rows were written {int(counts[0])} times?)",
                        "keep one copy of each row")
    return distinct


def validate_corpus(path: str | Path, *, deep_fingerprint: bool = False) -> ValidationReport:
    corpus = Corpus(path)
    items = validate_items(corpus)
    files = corpus.day_files()
    if not files:
        raise DataError(corpus.impressions_path, None, "no day=NNNN partitions",
                        "write impressions to impressions/day=NNNN/*.parquet")
    empty = [d for d, fs in files.items() if not fs]
    if empty:
        raise DataError(corpus.impressions_path / f"day={empty[0]:04d}", None, "day has no Parquet files",
                        "remove the empty day directory or regenerate it")
    days = list(files)
    gaps = sorted(set(range(days[0], days[-1] + 1)) - set(days))
    if gaps:
        raise DataError(corpus.impressions_path, "day", f"days {_ranges(gaps)} are missing between "
                        f"{days[0]} and {days[-1]}", "renumber the days consecutively (sequential training "
                        "needs one partition per day)")
    report = ValidationReport(len(items), items.dim, days, 0)
    for day in days:
        validate_day(corpus, day, items, report)
    meta = corpus.meta
    if meta:
        if meta.get("embedding_dim") not in (None, items.dim):
            raise DataError(corpus.path / META_FILE, "embedding_dim",
                            f"{meta['embedding_dim']} but items have {items.dim}", "regenerate corpus.json")
        if deep_fingerprint and meta.get("fingerprint") != compute_fingerprint(corpus.path):
            raise DataError(corpus.path / META_FILE, "fingerprint", "does not match the files' content "
                            "(files changed after the corpus was written)", "regenerate or re-import the corpus")
    return report
