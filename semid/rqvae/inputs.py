"""Stage 1's in-memory inputs: item embeddings, ids and impression weights as numpy arrays, torch tensors or an
Arrow table, checked once and turned into the arrays the trainers read (float32 [N, D], int64 [N], float64 [N]).

A bad input is a one-line ``SemidError`` naming the argument and the fix, before any work::

    >>> import numpy as np
    >>> as_embeddings(np.ones((3, 2)), "embeddings").dtype
    dtype('float32')
    >>> as_embeddings(np.ones(3), "embeddings")
    Traceback (most recent call last):
    ...
    semid.core.errors.SemidError: embeddings: expected a 2-D (N, D) array of item embeddings, got shape (3,)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from semid.core.errors import SemidError

if TYPE_CHECKING:
    import pyarrow as pa

ArrayLike = Union[np.ndarray, torch.Tensor]


def _numpy(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise SemidError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")


def as_embeddings(x: object, name: str) -> np.ndarray:
    """float32 [N, D] (C-contiguous) of an (N, D) array or tensor of finite numbers, N >= 1 and D >= 1."""
    a = _numpy(x, name)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise SemidError(f"{name}: expected a 2-D (N, D) array of item embeddings, got shape {tuple(a.shape)}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise SemidError(f"{name}: expected numbers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise SemidError(f"{name}: {int(bad.sum())} row(s) hold NaN or inf (e.g. row {int(np.flatnonzero(bad)[0])}), "
                         "or overflow float32; drop or fix those items")
    return a


def as_item_ids(x: object, name: str, n: int | None = None) -> np.ndarray:
    """int64 [N] of distinct integer item ids (``n``: the length they must have)."""
    a = _numpy(x, name)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise SemidError(f"{name}: expected a 1-D array of integer item ids, got shape {tuple(a.shape)} "
                         f"dtype {a.dtype}")
    if n is not None and len(a) != n:
        raise SemidError(f"{name}: {len(a):,} ids for {n:,} embeddings (give one id per embedding row)")
    a = a.astype(np.int64)
    s = np.sort(a)
    dup = s[1:][np.diff(s) == 0]
    if len(dup):
        raise SemidError(f"{name}: {len(dup):,} duplicate id(s), e.g. {int(dup[0])} (keep one row per item)")
    return a


def as_weights(x: object | None, name: str, n: int) -> np.ndarray:
    """float64 [N] impression weights: finite, >= 0, some > 0 (None: every item weighs 1)."""
    if x is None:
        return np.ones(n, np.float64)
    a = _numpy(x, name)
    if a.shape != (n,):
        raise SemidError(f"{name}: expected one weight per item, shape ({n},), got {tuple(a.shape)}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all() or (a < 0).any() or not (a > 0).any():
        raise SemidError(f"{name}: weights must be finite and >= 0 with at least one > 0 (impressions per item; "
                         "an item of weight 0 is not trained on)")
    return a


def from_arrow(table: "pa.Table", name: str, id_column: str = "item_id",
               embedding_column: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """(item ids int64 [N], embeddings float32 [N, D]) of an Arrow table of (``item_id``, ``embedding``), the
    embedding a list or fixed-size list of numbers (as in a corpus's items.parquet)."""
    import pyarrow as pa

    for col in (id_column, embedding_column):
        if col not in table.column_names:
            raise SemidError(f"{name}: no column '{col}' (expected columns {id_column}, {embedding_column}; got "
                             f"{', '.join(table.column_names)})")
    col = table[embedding_column].combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise SemidError(f"{name}: column '{embedding_column}' has type {col.type}, expected a list of numbers")
    if col.null_count:
        raise SemidError(f"{name}: column '{embedding_column}' has {col.null_count} null(s); drop those items")
    lengths = col.value_lengths().to_numpy(zero_copy_only=False) if not pa.types.is_fixed_size_list(col.type) \
        else np.full(len(col), col.type.list_size)
    if len(lengths) and (lengths != lengths[0]).any():
        raise SemidError(f"{name}: column '{embedding_column}' has lists of lengths {int(lengths.min())}.."
                         f"{int(lengths.max())}; every item needs the same dimension")
    dim = int(lengths[0]) if len(lengths) else 0
    values = col.flatten().to_numpy(zero_copy_only=False)
    emb = as_embeddings(values.reshape(len(col), dim), f"{name}: column '{embedding_column}'")
    ids = table[id_column].to_numpy()
    return as_item_ids(ids, f"{name}: column '{id_column}'", len(emb)), emb
