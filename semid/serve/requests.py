"""Scoring requests: one candidate per row, from a Parquet/Arrow batch, checked into arrays (JSON bodies:
``json_requests.py``).

| column / field | type | meaning |
| --- | --- | --- |
| ``item_id`` | int64, required | the candidate |
| ``watch_item_id`` | int64, nullable | the context item (null: none) |
| ``history_item_ids`` | list<int64>, nullable | the user's watch history, oldest first (the last ``history_length`` count) |
| ``embedding`` | list<float>, nullable | the candidate's content embedding: needed only when the artifact does not know it |
| ``day`` | int, nullable | the day the request is scored as of (default: the run's evaluation day) |
| ``first_day`` | int, nullable | an unknown candidate's first day (default: the request's day, i.e. new today) |

Any other Parquet column (a request id, labels) is copied to the output unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semid.core.errors import DataError, SemidError
from semid.serve.artifact import FeatureSchema

COLUMNS = ("item_id", "watch_item_id", "history_item_ids", "embedding", "day", "first_day")


class RequestError(SemidError):
    """A malformed request (the server answers 400)."""


class UnknownItemError(SemidError):
    """A request names an item the artifact cannot represent (the server answers 422)."""


@dataclass
class Requests:
    """B requests as arrays (every id int64, -1 = none)."""

    item_id: np.ndarray  # [B]
    watch_item_id: np.ndarray  # [B], -1 = no watch item
    history_offsets: np.ndarray  # [B+1]
    history_item_ids: np.ndarray  # [nnz], oldest first per request
    day: np.ndarray  # int64 [B]
    first_day: np.ndarray  # int64 [B], -1 = not given
    embedding: np.ndarray | None  # float32 [B, D] (rows without one are zero), or None
    has_embedding: np.ndarray  # bool [B]

    def __len__(self) -> int:
        return len(self.item_id)


# -- Arrow (semid score) -------------------------------------------------------------------------------------


def requests_from_arrow(batch: pa.RecordBatch | pa.Table, where: str | Path, schema: FeatureSchema) -> Requests:
    """Requests from a Parquet batch; errors name ``where`` and the column."""
    from semid.datamodules import to_int64

    path = Path(where)
    names = batch.schema.names
    if "item_id" not in names:
        raise DataError(path, "item_id", f"column is missing (found: {', '.join(names)})",
                        "one row per candidate: item_id, and optionally watch_item_id, history_item_ids, embedding, day")
    n = batch.num_rows
    item_id = to_int64(batch.column("item_id"), path, "item_id")
    _non_negative(item_id, path, "item_id")
    watch = to_int64(batch.column("watch_item_id"), path, "watch_item_id", nullable=True) if "watch_item_id" in names \
        else np.full(n, -1, np.int64)
    watch = np.where(watch < 0, -1, watch)
    if "history_item_ids" in names:
        offsets, hist = _list_of_ids(batch.column("history_item_ids"), path)
    else:
        offsets, hist = np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    day = _optional_day(batch, "day", path, schema.default_day)
    first_day = _optional_day(batch, "first_day", path, -1)
    emb, has = (_embeddings(batch.column("embedding"), path, schema.content_dim)
                if "embedding" in names and schema.content_dim is not None else (None, np.zeros(n, bool)))
    return Requests(item_id, watch, offsets, hist, day, first_day, emb, has)


def _non_negative(ids: np.ndarray, path: Path, name: str) -> None:
    if ids.size and ids.min() < 0:
        raise DataError(path, name, f"{int((ids < 0).sum())} negative id(s) (ids must be >= 0)")


def _optional_day(batch: pa.RecordBatch | pa.Table, name: str, path: Path, default: int) -> np.ndarray:
    from semid.datamodules import to_int64

    if name not in batch.schema.names:
        return np.full(batch.num_rows, default, np.int64)
    col = _array(batch.column(name))
    days = to_int64(col, path, name, nullable=True)
    given = col.is_valid().to_numpy(zero_copy_only=False)
    if (days[given] < 0).any():
        raise DataError(path, name, "negative day(s)", "days count from 0, as in the corpus")
    return np.where(given, days, default)


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    return col


def _list_of_ids(col: pa.Array | pa.ChunkedArray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    from semid.datamodules import to_int64

    col = _array(col)
    tp = col.type
    if not (pa.types.is_list(tp) or pa.types.is_large_list(tp) or pa.types.is_fixed_size_list(tp)):
        raise DataError(path, "history_item_ids", f"type {tp} is not a list of item ids", "store list<int64>")
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = col.flatten()  # honours slicing and skips null lists
    ids = to_int64(values, path, "history_item_ids")
    _non_negative(ids, path, "history_item_ids")
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), ids


def _embeddings(col: pa.Array | pa.ChunkedArray, path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    col = _array(col)
    tp = col.type
    if not (pa.types.is_list(tp) or pa.types.is_large_list(tp) or pa.types.is_fixed_size_list(tp)) \
            or not pa.types.is_floating(tp.value_type):
        raise DataError(path, "embedding", f"type {tp} is not a list of floats", "store list<float32> per row")
    has = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    values = col.flatten().to_numpy(zero_copy_only=False)
    return embedding_matrix(has, lengths, values, dim, path, "embedding"), has


def embedding_matrix(has: np.ndarray, lengths: np.ndarray, values: np.ndarray, dim: int, path: Path | str,
                     field: str) -> np.ndarray:
    """float32 [B, dim]: the given rows (``has``) of ``values`` (their ``lengths`` concatenated), zero elsewhere;
    ``DataError`` naming ``path`` and ``field`` for a wrong dimension, a value beyond float32, NaN or inf."""
    bad = has & (lengths != dim)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(path, field, f"row {i} has dimension {int(lengths[i])}, the model's encoder expects {dim}",
                        "give the content embeddings the corpus had (same model, same dimension)")
    if np.abs(values[np.isfinite(values)]).max(initial=0.0) > np.finfo(np.float32).max:
        raise DataError(path, field, "values beyond float32 range", "rescale the embeddings")
    mat = np.zeros((len(has), dim), np.float32)
    # float32 first, as the corpus stores them: the encoder then sees exactly what `sids assign` would
    mat[has] = values.astype(np.float32).reshape(-1, dim)
    nonfinite = ~np.isfinite(mat).all(axis=1)
    if nonfinite.any():
        raise DataError(path, field, f"{int(nonfinite.sum())} embedding(s) contain NaN or inf (first at row "
                        f"{int(np.flatnonzero(nonfinite)[0])})", "recompute them")
    return mat
