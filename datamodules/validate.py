"""Corpus validator: every check of the data contract, each failure one ``DataError`` naming file and field.

The checks come in two tiers, so that every command can afford the first and none pays the second twice:

* ``check_layout`` reads directory listings and Parquet footers only (O(files)): the files are there and
  readable, hold the contract's columns in types the readers convert losslessly, no file and no day is empty,
  the days are consecutive, and a day's files can be read as one table.
* ``check_content`` reads every value (O(data)): ids (duplicates, collisions after conversion, negatives),
  embeddings (NaN/inf, all identical), each impression's ids in items.parquet and on or after the item's
  first_day, 0/1 labels, nulls, the rows' day against their partition, copied day files.

``validate_corpus`` runs both (``semid data validate``); ``semid.datamodules.gate.open_corpus`` runs the first on every
open and the second once per state of the files, remembered in a validation stamp.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from semid.datamodules.corpus import (
    LABEL_COLUMNS,
    META_FILE,
    PRIOR_HISTORY_FILE,
    Corpus,
    Items,
    _ranges,
    _read_parquet,
    check_integer_type,
    compute_fingerprint,
    read_footer,
    to_int64,
)
from semid.core.errors import DataError
from semid.core.fingerprint import fingerprint_bytes

ITEM_COLUMNS = ("item_id", "embedding", "first_day")
# watch_item_id is required although nullable: the ranking data module reads it on every day
REQUIRED_IMPRESSION_COLUMNS = ("day", "user_id", "watch_item_id", "item_id", "click")
_INTEGER_IMPRESSION_COLUMNS = REQUIRED_IMPRESSION_COLUMNS + ("engaged",)
_CONTRACT = "see the data contract in README.md"
_NO_DIM = "give every item an embedding of at least one value"
# Largest |value| the gate lets through. Content embeddings of any learned encoder are O(1)-O(100) (MiniLM's are
# unit vectors); at 1e6 the RQ-VAE's squared reconstruction error is ~1e12 per value, ~1e17 summed over a batch of
# 512 x 256, and Adam's first steps with gradients of that size turned every weight NaN (issue 32 class 1). Six
# orders of magnitude above real embeddings, far below float32 trouble: a scale bug, not data, exceeds it.
MAX_ABS_EMBEDDING = 1e6


@dataclass
class ValidationReport:
    n_items: int
    dim: int
    days: list[int]
    n_impressions: int
    warnings: list[str] = field(default_factory=list)
    # same day, user, watch item and item: allowed (a user may see an item twice), reported
    repeated_impressions: int = 0
    # the O(data) checks were not run now: a validation stamp says they passed on these very files
    from_stamp: bool = field(default=False, compare=False)


# ---------------------------------------------------------------------------------------------
# layout: listings and footers only


def check_layout(corpus: Corpus) -> list[int]:
    """The cheap checks (no column data read); returns the corpus's days."""
    _check_items_footer(corpus)
    files = corpus.day_files()  # a stray entry of impressions/ is refused here
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
    everywhere: tuple[Path, set[str]] | None = None
    for fs in files.values():
        schemas = [(f, _check_day_footer(f)) for f in fs]
        _check_day_schemas_agree(schemas)
        for f, sch in schemas:
            everywhere = _check_same_columns(everywhere, f, sch)
    return days


def _check_same_columns(first: tuple[Path, set[str]] | None, f: Path, schema: pa.Schema) -> tuple[Path, set[str]]:
    """A column's presence is a property of the whole corpus: in every impression file or in none (a label on some
    days only would otherwise be filled in from another label on the others, issue 32 class 2)."""
    names = set(schema.names)
    if first is None:
        return f, names
    f0, names0 = first
    for col, here, there in sorted([(c, f, f0) for c in names0 - names] + [(c, f0, f) for c in names - names0]):
        raise DataError(here, col, f"column is missing here but present in {there} (a column is in every impression "
                        "file or in none)", f"add '{col}' to every day's files, or drop it from all of them")
    return first


def _require_columns(names: list[str], path: Path, required: tuple[str, ...]) -> None:
    for name in required:
        if name not in names:
            raise DataError(path, name, f"column is missing (found: {', '.join(names)})", _CONTRACT)


def _check_items_footer(corpus: Corpus) -> None:
    p = corpus.items_path
    schema, rows = read_footer(p)
    _require_columns(schema.names, p, ITEM_COLUMNS)
    for name in ("item_id", "first_day"):
        check_integer_type(schema.field(name).type, p, name)
    tp = schema.field("embedding").type
    if not (pa.types.is_list(tp) or pa.types.is_fixed_size_list(tp) or pa.types.is_large_list(tp)):
        raise DataError(p, "embedding", f"type {tp} is not a list of floats",
                        "store one fixed_size_list<float32>[D] per item")
    if not pa.types.is_floating(tp.value_type):
        raise DataError(p, "embedding", f"list values are {tp.value_type}, not floats", "store float32 values")
    if pa.types.is_fixed_size_list(tp) and tp.list_size == 0:
        raise DataError(p, "embedding", "dimension 0 (no values per item)", _NO_DIM)
    dim = corpus.meta.get("embedding_dim")
    if pa.types.is_fixed_size_list(tp) and dim is not None and rows and tp.list_size != dim:
        raise DataError(p, "embedding", f"dimension {tp.list_size} does not match the corpus dimension {dim}",
                        "recompute the embeddings or fix corpus.json's embedding_dim")
    if rows == 0:
        raise DataError(p, "item_id", "no items", "a corpus needs at least one item")


def _check_day_footer(f: Path) -> pa.Schema:
    schema, rows = read_footer(f)
    _require_columns(schema.names, f, REQUIRED_IMPRESSION_COLUMNS)
    for name in _INTEGER_IMPRESSION_COLUMNS:
        if name in schema.names:
            check_integer_type(schema.field(name).type, f, name)
    if rows == 0:
        raise DataError(f, None, "file has no rows", "drop the empty file or regenerate the day")
    return schema


def _check_day_schemas_agree(schemas: list[tuple[Path, pa.Schema]]) -> None:
    """A day's files are read as one table (``Corpus.read_day``): their column types must unify."""
    first, s0 = schemas[0]
    for f, s in schemas[1:]:
        for name in _INTEGER_IMPRESSION_COLUMNS:
            if name not in s.names or name not in s0.names:
                continue
            a, b = s0.field(name), s.field(name)
            try:
                pa.unify_schemas([pa.schema([a]), pa.schema([b])], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise DataError(f, name, f"type {b.type} here but {a.type} in {first.name} (a day's files are "
                                "read as one table)", "store every file of a day with the same column types") from None


# ---------------------------------------------------------------------------------------------
# content: every value


def validate_items(corpus: Corpus) -> Items:
    # ids and days now; the [N, D] embeddings a record batch at a time (embedding_summary): 10 GB at 10M items
    items = corpus.read_items(embeddings=False)
    p = corpus.items_path
    if len(items) == 0:
        raise DataError(p, "item_id", "no items", "a corpus needs at least one item")
    if (items.item_id < 0).any():
        raise DataError(p, "item_id", f"{int((items.item_id < 0).sum())} negative id(s)", "ids must be >= 0")
    dup = items.item_id[1:][items.item_id[1:] == items.item_id[:-1]]
    if len(dup):
        _refuse_duplicate_ids(p, np.unique(dup))
    if (items.first_day < 0).any():
        raise DataError(p, "first_day", "negative days", "days count from 0")
    return items


@dataclass
class EmbeddingSummary:
    identical: bool  # every item has the same embedding
    shared: int  # items whose embedding another item has too
    largest: int  # size of the largest group of items sharing one embedding
    max_abs: float = 0.0  # largest |value|
    max_abs_row: int = 0  # items.parquet row holding it


def embedding_summary(corpus: Corpus, chunk: int = 16384) -> EmbeddingSummary:
    """One pass over items.parquet's embeddings, a record batch at a time (types, dimension and finiteness are
    checked while reading): whether all rows are equal (every dimension has one value: running min/max) and
    which rows repeat, by a 64-bit hash of each row's bits."""
    lo = hi = mult = None
    hashes = []
    big, big_row = 0.0, 0
    with np.errstate(over="ignore"):  # wrapping multiply-add is the hash
        for start, mat in corpus.iter_embeddings():
            if mat.size:
                a = np.abs(mat).max(axis=1)
                i = int(np.argmax(a))
                if a[i] > big:
                    big, big_row = float(a[i]), start + i
            if lo is None:
                lo, hi = mat.min(axis=0), mat.max(axis=0)
                mult = np.random.default_rng(0).integers(1, 2 ** 63, size=mat.shape[1], dtype=np.uint64) | np.uint64(1)
            else:
                lo, hi = np.minimum(lo, mat.min(axis=0)), np.maximum(hi, mat.max(axis=0))
            bits = mat.view(np.uint32)
            for s in range(0, len(mat), chunk):
                hashes.append((bits[s:s + chunk].astype(np.uint64) * mult).sum(axis=1, dtype=np.uint64))
    if lo is None:
        return EmbeddingSummary(False, 0, 0)
    _, counts = np.unique(np.concatenate(hashes), return_counts=True)
    shared = counts[counts > 1]
    return EmbeddingSummary(bool((lo == hi).all()) and counts.sum() >= 2, int(shared.sum()), int(shared.max(initial=0)),
                            big, big_row)


def _refuse_duplicate_ids(p: Path, dup: np.ndarray) -> None:
    """Duplicates, named as the user wrote them: '07' and '7' (or -0.0 and 0.0) are one id after conversion."""
    raw = _read_parquet(p, columns=["item_id"])["item_id"]
    spellings: dict[int, set[str]] = {}
    if not pa.types.is_integer(raw.type):  # integers convert one to one: only a repeated value can collide
        ids = to_int64(raw, p, "item_id")
        hit = np.isin(ids, dup)
        for i, v in zip(ids[hit].tolist(), raw.filter(pa.array(hit)).to_pylist()):
            spellings.setdefault(i, set()).add(repr(v))
    collide = {i: sorted(s) for i, s in spellings.items() if len(s) > 1}
    if collide:
        i, s = next(iter(sorted(collide.items())))
        raise DataError(p, "item_id", f"{len(collide)} id(s) collide after conversion to int64, e.g. "
                        f"{' and '.join(s[:2])} both become {i}", "store ids as int64, one row per item")
    raise DataError(p, "item_id", f"{len(dup)} duplicate id(s), e.g. {int(dup[0])}", "keep one row per item")


def validate_day(corpus: Corpus, day: int, items: Items, report: ValidationReport) -> None:
    files: list[tuple[Path, RowHashes]] = []  # each file's impressions, one hash per impression
    for f in corpus.day_files()[day]:
        files.append((f, _validate_file(f, day, items, report)))
    _refuse_copied_rows(corpus, day, [(f, h.row) for f, h in files])
    # repeats of (user, watch item, item), whatever their labels: the rows minus their distinct triples
    triples = np.sort(np.concatenate([h.triple for _, h in files]))
    report.repeated_impressions += len(triples) - int(len(triples) and 1 + (triples[1:] != triples[:-1]).sum())


@dataclass
class RowHashes:
    """64-bit hashes of a day file's impressions: of the whole row (user, watch item, item, click, engaged) and of
    (user, watch item, item) alone. Sorting one uint64 key instead of lexsorting the int64 columns is ~5x faster
    on a 1.5M-impression day; two distinct rows of a day share a hash with probability ~n^2 / 2^65 (6e-8 for
    n = 1.5M), which at worst miscounts one repeat."""

    row: np.ndarray
    triple: np.ndarray


def _validate_file(f: Path, day: int, items: Items, report: ValidationReport) -> RowHashes:
    """Checks one day file; returns the hashes of its impressions."""
    t = _read_parquet(f)
    if t.num_rows == 0:
        raise DataError(f, None, "file has no rows", "drop the empty file or regenerate the day")
    dcol = to_int64(t["day"], f, "day")
    if (dcol != day).any():
        raise DataError(f, "day", f"values {sorted(set(dcol.tolist()))[:3]} differ from its partition "
                        f"day={day:04d}", "move the rows to their day's directory")
    col = {name: to_int64(t[name], f, name) for name in ("user_id", "item_id")}  # each column converted once
    for name in ("user_id", "item_id"):
        if (col[name] < 0).any():
            raise DataError(f, name, f"{int((col[name] < 0).sum())} negative id(s)", "ids must be >= 0")
    cand = col["item_id"]
    idx = items.index_of(cand)
    if (idx < 0).any():
        unknown = np.unique(cand[idx < 0])
        raise DataError(f, "item_id", f"{len(unknown)} id(s) not in items.parquet, e.g. {int(unknown[0])}",
                        "add the items or drop those impressions")
    early = items.first_day[idx] > day
    if early.any():
        i = int(np.flatnonzero(early)[0])
        raise DataError(f, "item_id", f"{int(early.sum())} impression(s) of items before their first_day (e.g. "
                        f"item {int(cand[i])}, first_day {int(items.first_day[idx[i]])}, on day {day})",
                        "first_day must be <= the day of the item's first impression")
    w = col["watch_item_id"] = to_int64(t["watch_item_id"], f, "watch_item_id", nullable=True)
    negative = int((w < 0).sum()) - t["watch_item_id"].null_count  # nulls read as -1
    if negative:
        raise DataError(f, "watch_item_id", f"{negative} negative id(s)", "ids must be >= 0; use null for 'no "
                        "watch item'")
    wi = items.index_of(w[w >= 0])
    if (wi < 0).any():
        unknown = np.unique(w[w >= 0][wi < 0])
        raise DataError(f, "watch_item_id", f"{len(unknown)} id(s) not in items.parquet, e.g. {int(unknown[0])}",
                        "add the items, or use null for 'no watch item'")
    col["engaged"] = np.zeros(t.num_rows, np.int64)
    for label in LABEL_COLUMNS:
        if label in t.column_names:
            v = col[label] = to_int64(t[label], f, label)
            bad = ~np.isin(v, (0, 1))
            if bad.any():
                raise DataError(f, label, f"values other than 0/1 (e.g. {int(v[bad][0])}, in {int(bad.sum()):,} "
                                "row(s))", "store binary labels as int8 0/1")
    if (col["engaged"] > col["click"]).any():
        report.warnings.append(f"{f}: field 'engaged': {int((col['engaged'] > col['click']).sum()):,} row(s) with "
                               "engaged=1 but click=0")
    report.n_impressions += t.num_rows
    triple = _hash_columns([col["user_id"], col["watch_item_id"], cand])
    return RowHashes(_hash_columns([col["click"], col["engaged"]], triple.copy(), first_key=3), triple)


_MIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
_COLUMN_KEYS = np.random.default_rng(7).integers(1, 2 ** 63, size=5, dtype=np.uint64) | np.uint64(1)


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place (wrapping arithmetic): every input bit moves every output bit."""
    h ^= h >> np.uint64(33)
    h *= _MIX[0]
    h ^= h >> np.uint64(33)
    h *= _MIX[1]
    h ^= h >> np.uint64(33)
    return h


def _hash_columns(cols: list[np.ndarray], h: np.ndarray | None = None, first_key: int = 0) -> np.ndarray:
    """Fold int64 columns into 64-bit hashes, one column after another (continuing ``h`` when given; column i
    gets key ``first_key + i``)."""
    h = np.zeros(len(cols[0]), np.uint64) if h is None else h
    with np.errstate(over="ignore"):
        for key, c in zip(_COLUMN_KEYS[first_key:], cols):
            h ^= c.astype(np.uint64) * key
            _fmix(h)
    return h


def _refuse_copied_rows(corpus: Corpus, day: int, rows: list[tuple[Path, np.ndarray]]) -> None:
    """A day written twice (a file copied, or an import run twice) would silently double-weight its impressions.

    A user may really see the same item twice a day (14% of the tiny synthetic corpus's impressions repeat one), so
    repeats alone are allowed; what cannot happen by chance is a file holding exactly another file's rows,
    or a day whose every distinct impression occurs the same k >= 2 times. Rows are compared by their hashes.
    """
    seen: dict[str, Path] = {}
    hashes = [np.sort(h) for _, h in rows]
    for (f, _), h in zip(rows, hashes) if len(rows) > 1 else []:  # one file has no other to be a copy of
        key = fingerprint_bytes(h)  # a digest of the file's rows as a multiset: the files are not held twice
        if key in seen:
            raise DataError(f, None, f"holds the same {len(h):,} impressions as {seen[key].name} (the day was "
                            "written twice?)", "delete the copy")
        seen[key] = f
    srt = np.sort(np.concatenate(hashes)) if len(hashes) > 1 else hashes[0]
    first = np.ones(len(srt), bool)
    first[1:] = srt[1:] != srt[:-1]
    counts = np.diff(np.append(np.flatnonzero(first), len(srt)))
    if len(srt) >= 4 and counts.min() >= 2 and (counts == counts[0]).all():
        raise DataError(corpus.impressions_path / f"day={day:04d}", None, f"every impression occurs exactly "
                        f"{int(counts[0])} times (the day's rows were written {int(counts[0])} times?)",
                        "keep one copy of each row")


def check_content(corpus: Corpus, days: list[int]) -> ValidationReport:
    """The O(data) checks, on a corpus that passed ``check_layout``."""
    items = validate_items(corpus)
    report = ValidationReport(len(items), items.dim, days, 0)
    if items.dim == 0:
        raise DataError(corpus.items_path, "embedding", "dimension 0 (no values per item)", _NO_DIM)
    emb = embedding_summary(corpus)
    if emb.max_abs > MAX_ABS_EMBEDDING:
        raise DataError(corpus.items_path, "embedding", f"|value| up to {emb.max_abs:.3g} (row {emb.max_abs_row}), "
                        f"beyond {MAX_ABS_EMBEDDING:.0e}: training would diverge",
                        "rescale the embeddings (e.g. L2-normalise each row)")
    if emb.identical:
        raise DataError(corpus.items_path, "embedding", f"all {len(items):,} items have the same embedding",
                        "Semantic IDs and Dense Input need embeddings that tell items apart; recompute the embeddings")
    shared, largest = emb.shared, emb.largest
    if shared:
        report.warnings.append(f"{corpus.items_path}: field 'embedding': {shared:,} item(s) share their embedding "
                               f"with another item (largest group {largest:,}); content cannot tell them apart")
    meta = corpus.meta
    if meta.get("embedding_dim") not in (None, items.dim):
        raise DataError(corpus.path / META_FILE, "embedding_dim", f"{meta['embedding_dim']} but items have "
                        f"{items.dim}", "regenerate corpus.json")
    for day in days:
        validate_day(corpus, day, items, report)
    _validate_prior_history(corpus, items)
    return report


def _validate_prior_history(corpus: Corpus, items: Items) -> None:
    """prior_history.parquet (optional): user and item ids, every item in items.parquet."""
    p = corpus.path / PRIOR_HISTORY_FILE
    if not p.exists():
        return
    t = _read_parquet(p)
    _require_columns(t.column_names, p, ("user_id", "item_id"))
    users, ids = to_int64(t["user_id"], p, "user_id"), to_int64(t["item_id"], p, "item_id")
    if (users < 0).any():
        raise DataError(p, "user_id", f"{int((users < 0).sum())} negative id(s)", "ids must be >= 0")
    unknown = np.unique(ids[items.index_of(ids) < 0])
    if len(unknown):
        raise DataError(p, "item_id", f"{len(unknown)} id(s) not in items.parquet, e.g. {int(unknown[0])}",
                        "add the items or drop those history rows")


def check_fingerprint(corpus: Corpus) -> None:
    """``--deep``: the files hash to the fingerprint corpus.json records (O(bytes))."""
    if corpus.meta and corpus.meta.get("fingerprint") != compute_fingerprint(corpus.path):
        raise DataError(corpus.path / META_FILE, "fingerprint", "does not match the files' content "
                        "(files changed after the corpus was written)", "regenerate or re-import the corpus")


def validate_corpus(path: str | Path, *, deep_fingerprint: bool = False) -> ValidationReport:
    """Every check, always (no stamp): what ``semid data validate`` runs."""
    corpus = Corpus(path)
    report = check_content(corpus, check_layout(corpus))
    if deep_fingerprint:
        check_fingerprint(corpus)
    return report
