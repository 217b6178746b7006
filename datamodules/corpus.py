"""The corpus format (Parquet) — the one reader/writer — as DESIGN.md's data contract describes.

Layout of a corpus directory::

    corpus.json                         format version, fingerprint, generator params, summary
    items.parquet                       item_id:int64, embedding:fixed_size_list<float32>[D],
                                        first_day:int32, optional title:string and gt_* columns
    impressions/day=NNNN/part-*.parquet day:int32, user_id:int64, watch_item_id:int64 (nullable),
                                        item_id:int64, click:int8, optional engaged:int8

A corpus is written into a temporary sibling directory and renamed into place on success.

``impressions/`` holds day partitions only: any other entry (``tmp/``, ``day=abc/``, ``day=0003.bak/``, a stray
file) is a ``DataError``, not skipped, so that a day is never silently left out of training. Hidden entries
(``.``-prefixed, e.g. atomic-write temporaries) are ignored.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from semid.core.artifacts import atomic_path, read_json, write_json
from semid.core.errors import DataError, SemidError
from semid.core.fingerprint import code_record, fingerprint_file, fingerprint_of
from semid.core.ids import locate
from semid.core.progress import bar
from semid.core.records import JsonObject

FORMAT_VERSION = 1
ITEMS_FILE = "items.parquet"
META_FILE = "corpus.json"
IMPRESSIONS_DIR = "impressions"
# optional: clicks from before day 0 (user_id:int64, item_id:int64, oldest first per user), e.g. MIND's history
# column; user history starts from them
PRIOR_HISTORY_FILE = "prior_history.parquet"
_DAY_DIR = re.compile(r"^day=([0-9]+)$")
_DAY_KEY = pa.schema([pa.field("day", pa.int32())])
# the hive key finds the days; each file is then read as a fragment of its own, with its own schema and no
# partition expression (the files hold a `day` column themselves, and a partitioned fragment scans ~6% slower)
_DAY_PARTITIONING = ds.partitioning(_DAY_KEY, flavor="hive")
_PARQUET = ds.ParquetFileFormat()
_LOCAL_FS = pafs.LocalFileSystem()
_NOT_A_DAY = "not a day partition", "name day directories day=NNNN, or move it out of impressions/"

IMPRESSION_COLUMNS = ("day", "user_id", "watch_item_id", "item_id", "click")
LABEL_COLUMNS = ("click", "engaged")


def items_schema(dim: int, *, title: bool = False, extra: dict[str, pa.DataType] | None = None) -> pa.Schema:
    fields = [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("first_day", pa.int32(), nullable=False),
    ]
    if title:
        fields.append(pa.field("title", pa.string()))
    for name, tp in (extra or {}).items():
        fields.append(pa.field(name, tp))
    return pa.schema(fields)


def impressions_schema(*, engaged: bool = True) -> pa.Schema:
    fields = [
        pa.field("day", pa.int32(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("watch_item_id", pa.int64(), nullable=True),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("click", pa.int8(), nullable=False),
    ]
    if engaged:
        fields.append(pa.field("engaged", pa.int8(), nullable=False))
    return pa.schema(fields)


def embedding_array(values: np.ndarray) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


# ---------------------------------------------------------------------------------------------
# reading with lossless conversion


def _read_parquet(path: Path, columns: list[str] | None = None, *, fragment: bool = False) -> pa.Table:
    """One Parquet file as a table of its own schema (``fragment``: read as a pyarrow.dataset fragment)."""
    if not path.exists():
        raise DataError(path, None, "file is missing", "check the corpus path, or regenerate the corpus")
    try:
        if fragment:  # without a schema a fragment reads as its file's own (physical) schema
            return _PARQUET.make_fragment(str(path), filesystem=_LOCAL_FS).to_table(columns=columns)
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(path, None, f"not a readable Parquet file ({str(e).splitlines()[0]})",
                        "rewrite it with pyarrow / pandas.to_parquet") from None
    except KeyError as e:
        raise DataError(path, str(e).strip("'\""), "column is missing", "see the data contract in README.md") from None


def read_footer(path: Path) -> tuple[pa.Schema, int]:
    """A Parquet file's schema and row count, from its footer alone (no column data is read)."""
    if not path.exists():
        raise DataError(path, None, "file is missing", "check the corpus path, or regenerate the corpus")
    try:
        f = pq.ParquetFile(path)
        return f.schema_arrow, f.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(path, None, f"not a readable Parquet file ({str(e).splitlines()[0]})",
                        "rewrite it with pyarrow / pandas.to_parquet") from None


# what each integer field of the contract holds, for the fix a message gives; any other name is an id
_KIND = {"click": "label", "engaged": "label", "day": "day", "first_day": "day"}
_STORE = {"id": "store ids as int64", "label": "store binary labels as int8 0/1", "day": "store days as int32"}
_FILL = {"id": "drop those rows or fill in the ids; only watch_item_id may be null",
         "label": "drop those rows or fill in 0/1 labels", "day": "fill in the days"}
_DIGITS = r"^-?[0-9]+$"  # ASCII only: Python's int() also takes ' 7', '+7', '7_0' and non-ASCII digits


def integer_kind(name: str) -> str:
    """``id``, ``label`` or ``day``: what the contract's field ``name`` holds."""
    return _KIND.get(name, "id")


def check_integer_type(tp: pa.DataType, path: Path, name: str) -> None:
    """Refuses a column type that ``to_int64`` cannot convert losslessly (read from a file's footer, no data)."""
    kind = integer_kind(name)
    if pa.types.is_dictionary(tp):
        tp = tp.value_type
    if pa.types.is_boolean(tp) and kind == "label":
        return
    if not (pa.types.is_integer(tp) or pa.types.is_floating(tp) or pa.types.is_string(tp)
            or pa.types.is_large_string(tp)):
        what = {"id": "an integer id type", "label": "a 0/1 label type", "day": "an integer day type"}[kind]
        raise DataError(path, name, f"type {tp} is not {what}", _STORE[kind])


def to_int64(col: pa.ChunkedArray | pa.Array, path: Path, name: str, *, nullable: bool = False) -> np.ndarray:
    """An integer field as int64; lossless conversions only (smaller ints, integral floats, ASCII digit strings,
    dictionary-encoded values, and bools for the 0/1 labels). ``nullable``: nulls become -1."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    kind = integer_kind(name)
    check_integer_type(col.type, path, name)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    tp = col.type
    if col.null_count and not nullable:
        first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(path, name, f"{col.null_count} null value(s) (first at row {first})", _FILL[kind])
    if col.null_count:  # converted with a stand-in every type holds (uint8 has no -1), then marked -1
        missing = col.is_null().to_numpy(zero_copy_only=False)
        stand_in = "0" if pa.types.is_string(tp) or pa.types.is_large_string(tp) else 0
        arr = to_int64(col.fill_null(pa.scalar(stand_in, tp)), path, name)
        arr[missing] = -1
        return arr
    if pa.types.is_boolean(tp):
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_integer(tp):
        arr = col.to_numpy(zero_copy_only=False)
        if pa.types.is_uint64(tp) and (arr > np.iinfo(np.int64).max).any():
            raise DataError(path, name, "uint64 values beyond int64", _STORE[kind])
        return arr.astype(np.int64)
    if pa.types.is_string(tp) or pa.types.is_large_string(tp):
        ok = pc.match_substring_regex(col, _DIGITS)
        if len(col) and not pc.all(ok).as_py():
            bad = col.filter(pc.invert(ok))[0].as_py()
            noun = {"id": "ids", "label": "labels", "day": "days"}[kind]
            raise DataError(path, name, f"string {noun} that are not integers (e.g. {bad!r})",
                            "map ids to int64 before importing" if kind == "id" else _STORE[kind])
        try:
            return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)  # writable, as the rest
        except pa.ArrowInvalid:
            raise DataError(path, name, "digit strings beyond int64", _STORE[kind]) from None
    f = col.to_numpy(zero_copy_only=False)  # floating
    if not np.all(np.isfinite(f)):
        raise DataError(path, name, f"type {tp} with NaN or inf values", _STORE[kind])
    if np.any(f != np.round(f)):
        raise DataError(path, name, f"type {tp} with non-integral values", _STORE[kind])
    if np.any(np.abs(f) >= 2.0 ** 63):  # astype would wrap them silently
        raise DataError(path, name, f"type {tp} with values beyond int64", _STORE[kind])
    return f.astype(np.int64)


def to_embedding_matrix(col: pa.ChunkedArray | pa.Array, path: Path, dim: int | None = None, *,
                        first_row: int = 0, row0_dim: int | None = None) -> np.ndarray:
    """(N, D) float32 from fixed/variable-size lists of float32/float64; checks shape and finiteness.

    A chunk of a longer file: ``first_row`` is the file row of its first element (for the messages) and
    ``row0_dim`` the dimension of the file's row 0, which every row must have."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    _check_embedding_type(col.type, path)
    if col.null_count:
        raise DataError(path, "embedding", f"{col.null_count} item(s) have no embedding", "fill or drop them")
    mat = _embedding_values(col, path, dim, first_row, row0_dim)
    bad = _non_finite_rows(mat)
    if len(bad):
        raise DataError(path, "embedding", f"{len(bad)} item(s) contain NaN or inf (first at row "
                        f"{first_row + bad[0]})", "recompute or drop those items")
    return mat


def _check_embedding_type(tp: pa.DataType, path: Path) -> None:
    if not (pa.types.is_list(tp) or pa.types.is_fixed_size_list(tp) or pa.types.is_large_list(tp)):
        raise DataError(path, "embedding", f"type {tp} is not a list of floats",
                        "store one fixed_size_list<float32>[D] per item")
    if not pa.types.is_floating(tp.value_type):
        raise DataError(path, "embedding", f"list values are {tp.value_type}, not floats",
                        "store float32 values")


def _embedding_values(col: pa.Array, path: Path, dim: int | None, first_row: int, row0_dim: int | None) -> np.ndarray:
    """The values of a null-free list column as float32 [N, D], shape-checked (finiteness is not)."""
    tp = col.type
    n = len(col)
    if pa.types.is_fixed_size_list(tp):
        d = tp.list_size
        if row0_dim is not None and n and d != row0_dim:
            raise DataError(path, "embedding", f"row {first_row} has dimension {d} but row 0 has {row0_dim}",
                            "all embeddings must have the same dimension")
    else:
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        d = row0_dim if row0_dim is not None else (int(lengths[0]) if n else (dim or 0))
        if n and (lengths != d).any():
            i = int(np.flatnonzero(lengths != d)[0])
            raise DataError(path, "embedding", f"row {first_row + i} has dimension {lengths[i]} but row 0 has {d}",
                            "all embeddings must have the same dimension")
    if dim is not None and n and d != dim:
        raise DataError(path, "embedding", f"dimension {d} does not match the corpus dimension {dim}",
                        "recompute the embeddings or fix corpus.json's embedding_dim")
    flat = col.flatten().to_numpy(zero_copy_only=False)
    if flat.dtype == np.float64:
        if np.abs(flat[np.isfinite(flat)]).max(initial=0.0) > np.finfo(np.float32).max:
            raise DataError(path, "embedding", "float64 values beyond float32 range", "rescale the embeddings")
    return np.ascontiguousarray(flat.astype(np.float32, copy=False).reshape(n, d))


def _non_finite_rows(mat: np.ndarray) -> np.ndarray:
    """Rows of ``mat`` holding NaN or inf (checked a slab at a time: no [N, D] bool temporary at once)."""
    out = []
    for s in range(0, len(mat), _FINITE_SLAB):
        bad = ~np.isfinite(mat[s:s + _FINITE_SLAB]).all(axis=1)
        if bad.any():
            out.append(s + np.flatnonzero(bad))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _count_non_finite(col: pa.Array, path: Path) -> int:
    """NaN/inf rows of a later batch, for an error message's total (a batch with other faults counts 0)."""
    try:
        return len(_non_finite_rows(_embedding_values(col, path, None, 0, None))) if not col.null_count else 0
    except DataError:
        return 0


_FINITE_SLAB = 8192
# items are streamed in record batches of this many rows: 64 MiB of dim-256 float32 embeddings, so that no
# stage but Dense Input holds more than a batch of the corpus's embeddings (10M items x 256 = 10 GB)
ITEM_BATCH_ROWS = 65536


# ---------------------------------------------------------------------------------------------


@dataclass
class Items:
    item_id: np.ndarray  # int64 [N], sorted ascending
    embedding: np.ndarray | None  # float32 [N, D]; None when read without (``read_items(embeddings=False)``)
    first_day: np.ndarray  # int32 [N]
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # title, gt_* columns
    embedding_dim: int | None = None  # D when ``embedding`` is None

    def __len__(self) -> int:
        return len(self.item_id)

    @property
    def dim(self) -> int:
        if self.embedding is None:
            assert self.embedding_dim is not None
            return self.embedding_dim
        return int(self.embedding.shape[1])

    def index_of(self, ids: np.ndarray) -> np.ndarray:
        """Row index for each id (``-1`` where unknown)."""
        table = self._position_table
        if table is None:
            pos, found = locate(self.item_id, ids)
            return np.where(found, pos, -1)
        ids = np.asarray(ids, dtype=np.int64)
        inside = (ids >= 0) & (ids < len(table))
        return np.where(inside, table[np.where(inside, ids, 0)], -1).astype(np.int64, copy=False)

    @functools.cached_property
    def _position_table(self) -> np.ndarray | None:
        """id -> row (``-1`` for a gap) when ids are dense enough (max id < 8N + 1024: synthetic ids are 7i + 1000,
        MovieLens ids are dense; int32, so <= 32 bytes an item): one random read per lookup instead of a binary
        search whose cache misses grow with N (every impression of every day is looked up: at 3M items the
        search made `data validate` grow as N^1.18)."""
        n = len(self.item_id)
        if n == 0 or self.item_id[0] < 0 or self.item_id[-1] >= 8 * n + 1024:
            return None
        table = np.full(int(self.item_id[-1]) + 1, -1, np.int32 if n < 2 ** 31 else np.int64)
        table[self.item_id] = np.arange(n, dtype=table.dtype)
        return table


@dataclass(frozen=True)
class ItemOrder:
    """Where each item is in items.parquet. Items are numbered by sorted id (the rows of ``Items``), files
    need not be sorted (the synthetic generator shuffles ids within a day)."""

    item_id: np.ndarray  # int64 [N], sorted
    file_row: np.ndarray  # int64 [N]: items.parquet row of sorted row r
    sorted_file: bool  # the file is in id order (file_row is the identity)

    def rows_of_file_rows(self, file_rows: np.ndarray) -> np.ndarray:
        """Sorted rows of items.parquet rows ``file_rows``."""
        if self.sorted_file:
            return np.asarray(file_rows, np.int64)
        inverse = np.empty(len(self.file_row), np.int64)
        inverse[self.file_row] = np.arange(len(self.file_row))
        return inverse[file_rows]


# corpus.json fields commands read, and their JSON types (None: may be null); a wrong type is refused on open,
# in one line, instead of a TypeError deep in whichever command reads it first (issue 32 class 3)
_META_TYPES: dict[str, tuple[type, ...]] = {
    "format_version": (int,), "embedding_dim": (int,), "n_items": (int,), "n_impressions": (int,), "days": (list,),
    "fingerprint": (str,), "code_fingerprint": (str,), "source": (str,), "period_days": (int,),
    "day_origin": (int,), "n_users": (int,), "since": (str, type(None)), "until": (str, type(None)),
    "ground_truth": (dict, type(None)), "import": (dict,), "negative_sampling": (dict,), "generator": (dict, str),
}
_JSON_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object", type(None): "null"}


def check_meta_types(meta: JsonObject, path: Path) -> None:
    """Each known corpus.json field has its JSON type (integers are not booleans; ``days`` holds integers).

    >>> check_meta_types({"n_items": "7"}, Path("corpus.json"))
    Traceback (most recent call last):
    semid.core.errors.DataError: corpus.json: field 'n_items': is a string ("7"), not an integer (restore corpus.json from the corpus's source, or re-import / regenerate the corpus)
    """
    for key, types in _META_TYPES.items():
        if key not in meta:
            continue
        v = meta[key]
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if ok and key == "days":
            ok = all(isinstance(d, int) and not isinstance(d, bool) for d in v)
        if not ok:
            got = _JSON_NAMES.get(type(v), "a boolean" if isinstance(v, bool) else type(v).__name__)
            if isinstance(v, bool):
                got = "a boolean"
            want = " or ".join(_JSON_NAMES[t] for t in types)
            if key == "days" and isinstance(v, list):
                got, want = "a list with a non-integer", "a list of integers"
            raise DataError(path, key, f"is {got} ({json.dumps(v)[:40]}), not {want}",
                            "restore corpus.json from the corpus's source, or re-import / regenerate the corpus")


class Corpus:
    """A corpus directory, unchecked beyond its existence and format version. Commands open one with
    ``semid.datamodules.open_corpus`` (the checked reader: the data contract's checks, remembered in a stamp)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(self.path, None, "corpus directory does not exist" if not self.path.exists() else
                            "not a corpus directory", "check the path, or create a corpus with `semid data synth` "
                            "or `semid data movielens`")
        self.items_path = self.path / ITEMS_FILE
        self.impressions_path = self.path / IMPRESSIONS_DIR
        self._day_files: dict[int, list[Path]] | None = None
        meta_path = self.path / META_FILE
        self.meta: JsonObject = read_json(meta_path) if meta_path.exists() else {}
        if not isinstance(self.meta, dict):
            raise DataError(meta_path, None, f"holds a JSON {type(self.meta).__name__}, not an object",
                            "regenerate the corpus, or restore corpus.json")
        check_meta_types(self.meta, meta_path)
        if self.meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise DataError(meta_path, "format_version", f"{self.meta['format_version']} is newer than this semid "
                            f"understands ({FORMAT_VERSION})", "upgrade semid")

    @functools.cached_property
    def fingerprint(self) -> str:
        # hashing every file (a corpus without corpus.json) once per reader, not once per question
        return self.meta.get("fingerprint") or compute_fingerprint(self.path)

    def day_files(self) -> dict[int, list[Path]]:
        """Day -> its Parquet files (sorted), listed once per reader (callers ask per day: a listing per call
        was O(days^2) directory reads). Found with pyarrow.dataset's hive partitioning on ``day``; an entry of
        impressions/ that is not a day partition raises ``DataError`` naming it."""
        if self._day_files is None:
            self._day_files = self._list_day_files()
        return dict(self._day_files)

    def _day_dirs(self) -> dict[str, int]:
        """Day directory name -> day, for every entry of impressions/; any entry that is not one is an error."""
        if not self.impressions_path.is_dir():
            raise DataError(self.impressions_path, None, "directory is missing",
                            "impressions go in impressions/day=NNNN/*.parquet")
        names: dict[str, int] = {}
        first: dict[int, str] = {}
        for d in sorted(self.impressions_path.iterdir()):
            if d.name.startswith("."):  # hidden: an atomic write's temporary sibling
                continue
            m = _DAY_DIR.match(d.name)
            if not (m and d.is_dir() and int(m.group(1)) < 2 ** 31):
                raise DataError(d, None, *_NOT_A_DAY)
            day = int(m.group(1))
            if day in first:
                raise DataError(d, None, f"a second partition of day {day} (next to {first[day]})",
                                "keep one directory per day")
            names[d.name], first[day] = day, d.name
        return names

    def _list_day_files(self) -> dict[int, list[Path]]:
        names = self._day_dirs()
        out: dict[int, list[Path]] = {day: [] for day in names.values()}  # an empty day stays listed
        base = str(self.impressions_path)
        try:
            # a schema given: files are listed, not opened (a damaged file is reported when read, naming it)
            dataset = ds.dataset(base, schema=_DAY_KEY, format=_PARQUET, partitioning=_DAY_PARTITIONING,
                                 filesystem=_LOCAL_FS, ignore_prefixes=["."])
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(self.impressions_path, None, f"cannot list the day partitions "
                            f"({str(e).splitlines()[0]})", "check the directory's permissions") from None
        for frag in dataset.get_fragments():
            rel = Path(frag.path).relative_to(base)
            day = ds.get_partition_keys(frag.partition_expression).get("day")
            # a day's data are the *.parquet files directly in its directory (others, and subdirectories, are not)
            if len(rel.parts) != 2 or rel.suffix != ".parquet" or names.get(rel.parts[0]) != day:
                continue
            out[day].append(self.impressions_path / rel)
        return {day: sorted(fs) for day, fs in sorted(out.items())}

    def days(self) -> list[int]:
        return list(self.day_files())

    def read_item_ids(self) -> np.ndarray:
        """Sorted item ids, read without the embeddings."""
        return self.item_order.item_id

    @functools.cached_property
    def item_order(self) -> ItemOrder:
        """Sorted ids and each one's items.parquet row (the id column only is read, once per reader)."""
        t = _read_parquet(self.items_path, columns=["item_id"])
        ids = to_int64(t["item_id"], self.items_path, "item_id")
        if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
            return ItemOrder(ids, np.arange(len(ids), dtype=np.int64), True)
        order = np.argsort(ids, kind="stable")
        return ItemOrder(ids[order], order.astype(np.int64), False)

    def embedding_dim(self) -> int:
        """D of the items' embeddings: from the footer for fixed-size lists, else from the first row."""
        schema, rows = read_footer(self.items_path)
        if "embedding" not in schema.names:
            raise DataError(self.items_path, "embedding", f"column is missing (found: {', '.join(schema.names)})",
                            "see the data contract in README.md")
        tp = schema.field("embedding").type
        if pa.types.is_fixed_size_list(tp):
            return int(tp.list_size)
        for _, mat in self.iter_embeddings(groups=[0] if rows else []):
            return int(mat.shape[1])
        return int(self.meta.get("embedding_dim") or 0)

    def read_items(self, columns: list[str] | None = None, *, embeddings: bool = True,
                   embedding_dtype: np.dtype | type = np.float32) -> Items:
        """Every item, sorted by id. ``embeddings=False``: without the [N, D] matrix (``Items.embedding`` is
        None), which a 10M-item corpus of dim 256 holds as 10 GB; the embeddings are read a record batch at a
        time into one preallocated array of ``embedding_dtype`` (never the whole column as Arrow data next to
        it: peak memory is the matrix and one batch)."""
        names = read_footer(self.items_path)[0].names
        wanted = list(columns) if columns is not None else names
        for name in ("item_id", "embedding", "first_day"):
            if name not in names or name not in wanted:
                raise DataError(self.items_path, name, f"column is missing (found: "
                                f"{', '.join(c for c in wanted if c in names)})", "see the data contract in README.md")
        table = _read_parquet(self.items_path, columns=[c for c in wanted if c != "embedding"])
        ids = to_int64(table["item_id"], self.items_path, "item_id")
        order = np.argsort(ids, kind="stable")
        first64 = to_int64(table["first_day"], self.items_path, "first_day")
        if len(first64) and np.abs(first64).max() >= 2 ** 31:  # astype would wrap them silently
            raise DataError(self.items_path, "first_day", "values beyond int32", "store days as int32")
        first = first64.astype(np.int32)
        extra = {c: table[c].to_numpy(zero_copy_only=False)[order]
                 for c in table.column_names if c not in ("item_id", "embedding", "first_day")}
        if not embeddings:
            return Items(ids[order], None, first[order], extra, embedding_dim=self.embedding_dim())
        return Items(ids[order], self._all_embeddings(order, np.dtype(embedding_dtype)), first[order], extra)

    def _all_embeddings(self, order: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """[N, D] of ``dtype`` in the row order ``order`` (file row of each output row), a record batch at a time."""
        n = len(order)
        identity = n < 2 or bool((order[1:] > order[:-1]).all())
        target = None
        if not identity:
            target = np.empty(n, np.int64)
            target[order] = np.arange(n)
        out: np.ndarray | None = None
        with bar("item embeddings", total=n, unit="item") as pb:  # 10M items of dim 256: ~1 min
            for start, mat in self.iter_embeddings():
                if out is None:
                    out = np.empty((n, mat.shape[1]), dtype)
                if target is None:
                    out[start:start + len(mat)] = mat
                else:
                    out[target[start:start + len(mat)]] = mat
                pb.update(len(mat))
        return out if out is not None else np.zeros((0, int(self.meta.get("embedding_dim") or 0)), dtype)

    def read_embeddings(self, rows: np.ndarray, *, file_rows: bool = False) -> np.ndarray:
        """float32 [len(rows), D] of item rows ``rows`` (sorted-id numbering, as ``Items``; ``file_rows``: the
        rows of items.parquet), in that order, reading only the row groups that hold them."""
        rows = np.asarray(rows, np.int64)
        fr = rows if file_rows else self.item_order.file_row[rows]
        order = np.argsort(fr, kind="stable")
        fr_sorted = fr[order]
        bounds = self._row_group_starts()
        groups = np.unique(np.searchsorted(bounds, fr_sorted, side="right") - 1).tolist()
        out: np.ndarray | None = None
        for start, mat in self.iter_embeddings(groups=groups):
            if out is None:
                out = np.empty((len(rows), mat.shape[1]), np.float32)
            lo, hi = np.searchsorted(fr_sorted, [start, start + len(mat)])
            out[order[lo:hi]] = mat[fr_sorted[lo:hi] - start]
        return out if out is not None else np.zeros((len(rows), self.embedding_dim()), np.float32)

    def _row_group_starts(self) -> np.ndarray:
        """First file row of every row group of items.parquet, and the row count at the end."""
        md = pq.ParquetFile(self.items_path).metadata
        return np.concatenate([[0], np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])])

    def iter_embeddings(self, groups: list[int] | None = None,
                        batch_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(file row of the first, float32 [n, D]) for record batches of the embedding column in file order (of
        row groups ``groups``, all by default), checked as ``to_embedding_matrix`` checks the column: one dimension for every
        row, no nulls, no NaN/inf, and the counts in those messages are over the whole file."""
        path = self.items_path
        dim = self.meta.get("embedding_dim")
        batch_rows = batch_rows or ITEM_BATCH_ROWS
        bounds = self._row_group_starts()
        try:
            f = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(path, None, f"not a readable Parquet file ({str(e).splitlines()[0]})",
                            "rewrite it with pyarrow / pandas.to_parquet") from None
        if "embedding" not in f.schema_arrow.names:
            raise DataError(path, "embedding", f"column is missing (found: {', '.join(f.schema_arrow.names)})",
                            "see the data contract in README.md")

        def batches() -> Iterator[tuple[int, pa.Array]]:
            for g in range(len(bounds) - 1) if groups is None else groups:
                start = int(bounds[g])
                try:
                    for b in f.iter_batches(batch_size=batch_rows, row_groups=[g], columns=["embedding"]):
                        yield start, b.column(0)
                        start += b.num_rows
                except (pa.ArrowInvalid, OSError) as e:
                    raise DataError(path, None, f"not a readable Parquet file ({str(e).splitlines()[0]})",
                                    "rewrite it with pyarrow / pandas.to_parquet") from None

        it = batches()
        row0: int | None = None
        for start, col in it:
            _check_embedding_type(col.type, path)
            if col.null_count:
                total = col.null_count + sum(c.null_count for _, c in it)
                raise DataError(path, "embedding", f"{total} item(s) have no embedding", "fill or drop them")
            mat = _embedding_values(col, path, dim, start, row0)
            bad = _non_finite_rows(mat)
            if len(bad):
                rest = sum(_count_non_finite(c, path) for _, c in it)
                raise DataError(path, "embedding", f"{len(bad) + rest} item(s) contain NaN or inf (first at row "
                                f"{start + bad[0]})", "recompute or drop those items")
            if row0 is None and len(mat):
                row0 = int(mat.shape[1])
            yield start, mat

    def read_day(self, day: int, columns: list[str] | None = None) -> pa.Table:
        files = self.day_files().get(day)
        if files is None:
            raise SemidError(f"{self.impressions_path}: no day={day:04d} partition (days present: "
                             f"{_ranges(self.days())})")
        tables = [_read_parquet(f, columns, fragment=True) for f in files]
        if not tables:
            raise DataError(self.impressions_path / f"day={day:04d}", None, "day has no Parquet files",
                            "remove the empty day directory or regenerate it")
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]

    def read_day_share(self, day: int, rank: int, world: int, columns: list[str] | None = None) -> pa.Table:
        """Rows ``[rank*n//world, (rank+1)*n//world)`` of a day, reading only the row groups that hold them.

        Every rank gets ``n // world`` rows (the last ``n % world`` rows are dropped when ``world > 1``)
        so that per-rank batch counts and sizes match, as row-wise sharding requires.
        """
        if world == 1:
            return self.read_day(day, columns)
        files = self.day_files().get(day) or []
        groups = []  # (file, row group, first global row, rows)
        start = 0
        for f in files:
            md = pq.ParquetFile(f).metadata
            for g in range(md.num_row_groups):
                rows = md.row_group(g).num_rows
                groups.append((f, g, start, rows))
                start += rows
        per = start // world
        lo, hi = rank * per, (rank + 1) * per
        parts = []
        for f, g, first, rows in groups:
            if first + rows <= lo or first >= hi:
                continue
            t = pq.ParquetFile(f).read_row_group(g, columns=columns)
            parts.append(t.slice(max(lo - first, 0), min(hi, first + rows) - max(lo, first)))
        if not parts:
            return self.read_day(day, columns).slice(0, 0)
        return pa.concat_tables(parts, promote_options="permissive")

    def iter_days(self, columns: list[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        for day in self.days():
            yield day, self.read_day(day, columns)


def _ranges(days: list[int]) -> str:
    if not days:
        return "none"
    out, start, prev = [], days[0], days[0]
    for d in days[1:] + [None]:  # type: ignore[list-item]
        if d is not None and d == prev + 1:
            prev = d
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if d is not None:
            start = prev = d
    return ",".join(out)


def compute_fingerprint(path: str | Path) -> str:
    """Content hash over every data file of the corpus (names and bytes)."""
    path = Path(path)
    files = [path / ITEMS_FILE] + sorted((path / IMPRESSIONS_DIR).glob("day=*/*.parquet")) + [path / PRIOR_HISTORY_FILE]
    return fingerprint_of([[str(f.relative_to(path)), fingerprint_file(f)] for f in files if f.exists()])


# ---------------------------------------------------------------------------------------------
# writing


class CorpusWriter:
    """Writes a corpus into a temporary directory; ``close()`` adds corpus.json and renames it into place.

    Items may be written in chunks (``write_items`` repeatedly); impressions as one or more parts per day.
    """

    def __init__(self, out: str | Path, dim: int, *, overwrite: bool = False, title: bool = False,
                 item_extra: dict[str, pa.DataType] | None = None, engaged: bool = True) -> None:
        self.out = Path(out)
        self._ctx = atomic_path(self.out, overwrite=overwrite)
        self.tmp = self._ctx.__enter__()
        (self.tmp / IMPRESSIONS_DIR).mkdir(parents=True)
        self.dim = dim
        self.items_schema = items_schema(dim, title=title, extra=item_extra)
        self.impressions_schema = impressions_schema(engaged=engaged)
        self._items_writer = pq.ParquetWriter(self.tmp / ITEMS_FILE, self.items_schema)
        self._parts: dict[int, int] = {}
        self.n_items = 0
        self.n_impressions = 0

    def write_items(self, item_id: np.ndarray, embedding: np.ndarray, first_day: np.ndarray,
                    **extra: Any) -> None:
        cols: dict[str, pa.Array] = {
            "item_id": pa.array(item_id, pa.int64()),
            "embedding": embedding_array(embedding),
            "first_day": pa.array(first_day, pa.int32()),
        }
        for f in self.items_schema:
            if f.name not in cols:
                cols[f.name] = pa.array(extra[f.name], f.type)
        self._items_writer.write_table(pa.table(cols, schema=self.items_schema), row_group_size=65536)
        self.n_items += len(item_id)

    def write_impressions(self, day: int, columns: dict[str, np.ndarray]) -> None:
        d = self.tmp / IMPRESSIONS_DIR / f"day={day:04d}"
        d.mkdir(exist_ok=True)
        part = self._parts.get(day, 0)
        self._parts[day] = part + 1
        arrays = []
        for f in self.impressions_schema:
            v = columns[f.name]
            if f.name == "watch_item_id":
                v = np.asarray(v)
                arrays.append(pa.array(v, pa.int64(), mask=v < 0))
            else:
                arrays.append(pa.array(v, f.type))
        table = pa.Table.from_arrays(arrays, schema=self.impressions_schema)
        # small row groups let each rank of a distributed run read only its share of a day
        pq.write_table(table, d / f"part-{part:04d}.parquet", row_group_size=65536)
        self.n_impressions += len(table)

    def close(self, meta: JsonObject) -> Path:
        self._items_writer.close()
        full = {
            "format_version": FORMAT_VERSION,
            "embedding_dim": self.dim,
            "n_items": self.n_items,
            "n_impressions": self.n_impressions,
            "days": sorted(self._parts),
            **code_record("datamodules"),  # semid experiment regenerates a corpus whose generator code changed
            **meta,
        }
        full["fingerprint"] = compute_fingerprint(self.tmp)
        write_json(self.tmp / META_FILE, full)
        self._ctx.__exit__(None, None, None)
        return self.out

    def abort(self, exc: BaseException) -> None:
        try:
            self._items_writer.close()
        finally:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> "CorpusWriter":
        return self

    def __exit__(self, tp, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc is not None:
            self.abort(exc)
