"""Scoring requests: one candidate per row, from a Parquet/Arrow batch or a JSON batch, checked into arrays.

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
from semid.core.records import JsonValue
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
    return _embedding_matrix(has, lengths, values, dim, path, "embedding"), has


def _embedding_matrix(has: np.ndarray, lengths: np.ndarray, values: np.ndarray, dim: int, path: Path | str,
                      field: str) -> np.ndarray:
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


# -- JSON (semid serve) --------------------------------------------------------------------------------------

MAX_JSON_REQUESTS = 65536


def requests_from_json(body: JsonValue, schema: FeatureSchema) -> Requests:
    """Requests from a decoded JSON body ``{"requests": [{"item_id": 1, ...}, ...]}``; ``RequestError`` names the
    first bad field (``requests[3].history_item_ids``)."""
    if not isinstance(body, dict) or "requests" not in body:
        raise RequestError("the body must be a JSON object with a 'requests' list, e.g. "
                           '{"requests": [{"item_id": 1, "watch_item_id": 2, "history_item_ids": [3]}]}')
    unknown = sorted(set(body) - {"requests"})
    if unknown:
        raise RequestError(f"unknown top-level field(s) {', '.join(map(repr, unknown))} (expected only 'requests')")
    rows = body["requests"]
    if not isinstance(rows, list) or not rows:
        raise RequestError("'requests' must be a non-empty list of objects")
    if len(rows) > MAX_JSON_REQUESTS:
        raise RequestError(f"'requests' holds {len(rows)} requests; at most {MAX_JSON_REQUESTS} per call")
    n = len(rows)
    item_id = np.empty(n, np.int64)
    watch = np.full(n, -1, np.int64)
    day = np.full(n, schema.default_day, np.int64)
    first_day = np.full(n, -1, np.int64)
    lengths = np.zeros(n, np.int64)
    hist: list[int] = []
    emb_rows: list[tuple[int, list[float]]] = []
    for i, r in enumerate(rows):
        at = f"requests[{i}]"
        if not isinstance(r, dict):
            raise RequestError(f"{at} must be an object, not {type(r).__name__}")
        extra = sorted(set(r) - set(COLUMNS))
        if extra:
            raise RequestError(f"{at}: unknown field(s) {', '.join(map(repr, extra))} (fields: {', '.join(COLUMNS)})")
        if "item_id" not in r:
            raise RequestError(f"{at}.item_id is missing (every request names its candidate item)")
        item_id[i] = _json_id(r["item_id"], f"{at}.item_id")
        if r.get("watch_item_id") is not None:
            watch[i] = _json_id(r["watch_item_id"], f"{at}.watch_item_id")
        h = r.get("history_item_ids")
        if h is not None:
            if not isinstance(h, list):
                raise RequestError(f"{at}.history_item_ids must be a list of item ids, not {type(h).__name__}")
            hist.extend(_json_ids(h, f"{at}.history_item_ids"))
            lengths[i] = len(h)
        for name, arr in (("day", day), ("first_day", first_day)):
            if r.get(name) is not None:
                arr[i] = _json_id(r[name], f"{at}.{name}")
        e = r.get("embedding")
        if e is not None:
            if not isinstance(e, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in e):
                raise RequestError(f"{at}.embedding must be a list of numbers")
            emb_rows.append((i, e))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    has = np.zeros(n, bool)
    emb = None
    if schema.content_dim is not None and emb_rows:
        has[[i for i, _ in emb_rows]] = True
        lens = np.zeros(n, np.int64)
        lens[[i for i, _ in emb_rows]] = [len(e) for _, e in emb_rows]
        values = np.asarray([x for _, e in emb_rows for x in e], np.float64)
        try:
            emb = _embedding_matrix(has, lens, values, schema.content_dim, "request", "embedding")
        except DataError as e:
            raise RequestError(str(e)) from None
    return Requests(item_id, watch, offsets, np.asarray(hist, np.int64), day, first_day, emb, has)


_INT64_MAX = 2 ** 63 - 1


def _json_id(x: JsonValue, at: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise RequestError(f"{at} must be a non-negative integer, not {json_type(x)}")
    if x < 0 or x > _INT64_MAX:
        raise RequestError(f"{at} must be a non-negative 64-bit integer, not {x}")
    return x


def _json_ids(xs: list[JsonValue], at: str) -> list[int]:
    """A list of ids, checked in bulk, element by element only to name a bad one (histories of up to 50 items:
    one ``_json_id`` per element took 110 ms per 1024-request batch, the bulk check 13 ms)."""
    if all(type(x) is int for x in xs) and (not xs or (min(xs) >= 0 and max(xs) <= _INT64_MAX)):  # bool is not int
        return xs
    return [_json_id(x, f"{at}[{j}]") for j, x in enumerate(xs)]


def json_type(x: object) -> str:
    return {type(None): "null", bool: "a boolean", str: "a string", float: "a float", list: "a list",
            dict: "an object"}.get(type(x), type(x).__name__)
