"""The SID assignment rule, on items held in memory: codes of the frozen quantizer, and optionally the collision
suffix. ``Quantizer.assign`` calls it on arrays; ``semid sids assign`` encodes a corpus chunk by chunk and
finishes through ``finish_table``, so both make the same table from the same items.

Collision suffix (``collision_suffix=True``): a level that numbers the items sharing a full SID, 0, 1, 2, ... by
distance of the item's embedding to its reconstruction, ties by item id; on an update existing items keep
theirs and a new item takes the next free number of its SID. The suffix has K values like every level: a SID
shared by more than K items is refused with a one-line error.

    >>> import numpy as np
    >>> number_collisions(np.array([[0, 1], [0, 1], [2, 3]]), np.array([0.5, 0.1, 0.0]), np.array([7, 8, 9]))
    array([1, 0, 0])
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from semid.core.errors import SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_of
from semid.core.ids import locate
from semid.rqvae.health import sid_groups
from semid.rqvae.inputs import ArrayLike, as_embeddings
from semid.rqvae.sid_table import SidTable

if TYPE_CHECKING:
    from semid.rqvae.frozen import Quantizer


def arrays_fingerprint(item_ids: np.ndarray, embeddings: np.ndarray, weights: np.ndarray | None = None) -> str:
    """The data fingerprint of items given as arrays (what a corpus fingerprint is for a corpus)."""
    parts = (item_ids, embeddings) if weights is None else (item_ids, embeddings, weights)
    return fingerprint_of(["arrays", fingerprint_bytes(*parts)])


def assign_table(model: "Quantizer", item_ids: np.ndarray, embeddings: ArrayLike, *, collision_suffix: bool = False,
                 batch_size: int = 1024) -> SidTable:
    """The SID table of items ``item_ids`` [N] (distinct int64) with ``embeddings`` [N, D]."""
    emb = as_embeddings(embeddings, "embeddings")
    if len(item_ids) != len(emb):
        raise SemidError(f"item_ids: {len(item_ids):,} ids for {len(emb):,} embeddings (give one id per row)")
    o = np.argsort(item_ids, kind="stable")
    ids, emb = item_ids[o], emb[o]
    codes = model.encode(emb, batch_size, where="embeddings")
    dist = reconstruction_distance(model, emb, np.arange(len(ids)), codes, batch_size) if collision_suffix else None
    return finish_table(model, ids, codes, dist, arrays_fingerprint(ids, emb), collision_suffix)[0]


def finish_table(model: "Quantizer", ids: np.ndarray, codes: np.ndarray, distance: np.ndarray | None,
                 data_fingerprint: str | None, collision_suffix: bool,
                 old: SidTable | None = None) -> tuple[SidTable, int | None]:
    """The table of items ``ids`` [n] (ascending) with quantizer codes [n, L]: with the collision suffix
    (numbered by ``distance`` [n]) when asked, added to ``old`` when given (whose SIDs never change). Also
    returns the most items that share one SID with the suffix (None without it)."""
    largest = None
    if collision_suffix:
        assert distance is not None
        codes, largest = with_suffix(model.codebook_size, distance, ids, codes, old)
    if old is not None:
        return old.extend(ids, codes), largest  # raises if a re-encoded known item would change
    return SidTable(ids, codes, model.codebook_size, model.fingerprint, data_fingerprint, collision_suffix), largest


def reconstruction_distance(model: "Quantizer", embedding: np.ndarray, rows: np.ndarray, codes: np.ndarray,
                            batch_size: int) -> np.ndarray:
    """||x - x̂||² float64 [n] of ``embedding[rows]`` and their SIDs ``codes`` [n, L], a batch at a time."""
    out = np.empty(len(rows), np.float64)
    step = max(1, batch_size)
    for s in range(0, len(rows), step):
        x = embedding[rows[s:s + step]].astype(np.float64)
        out[s:s + len(x)] = ((x - model.reconstruct(codes[s:s + step], batch_size)) ** 2).sum(1)
    return out


def number_collisions(codes: np.ndarray, distance: np.ndarray, item_id: np.ndarray,
                      first_free: np.ndarray | None = None) -> np.ndarray:
    """Suffix [n] int64 of items with SIDs ``codes`` [n, L]: rank among the items of the same SID by
    (``distance``, item id), plus ``first_free`` [n] (the next free number of the item's SID; 0 if None)."""
    group, _ = sid_groups(codes)
    order = np.lexsort((item_id, distance, group))  # by SID, then distance, then id
    g = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1] if len(g) else np.zeros(0, np.int64)
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    suffix = np.empty(len(g), np.int64)
    suffix[order] = rank
    return suffix if first_free is None else suffix + first_free


def with_suffix(k: int, distance: np.ndarray, ids: np.ndarray, codes: np.ndarray,
                old: SidTable | None) -> tuple[np.ndarray, int]:
    """Codes [n, L+1]: the quantizer's codes and the collision suffix (existing items keep theirs), from each
    item's reconstruction ``distance`` [n]; ``k``: the codebook size. Also returns the largest number of items
    sharing one SID (of the table after this call)."""
    n, levels = codes.shape
    full = np.zeros((n, levels + 1), np.int32)
    full[:, :levels] = codes
    new = np.ones(n, bool)
    first_free = np.zeros(n, np.int64)
    if old is not None:
        pos, known = locate(old.item_id, ids)
        full[known, levels] = old.codes[pos[known], levels]  # kept; extend() checks the levels before it
        new = ~known
        # the next free number of every SID already in the table: one more than its largest suffix
        both = np.concatenate([old.codes[:, :levels], codes[new]])
        group, _ = sid_groups(both)
        top = np.full(int(group.max()) + 1 if len(group) else 0, -1, np.int64)
        np.maximum.at(top, group[:len(old)], old.codes[:, levels].astype(np.int64))
        first_free[new] = top[group[len(old):]] + 1
    suffix = number_collisions(codes[new], distance[new], ids[new], first_free[new])
    if len(suffix) and suffix.max() >= k:
        i = int(np.argmax(suffix))
        sid = ",".join(str(int(c)) for c in codes[new][i])
        raise SemidError(f"collision suffix: {int(suffix.max()) + 1} items share the SID ({sid}) but the suffix "
                         f"level has K={k} codes (use more levels or codes, or residual k-means with "
                         "rqkmeans.balanced: true)")
    full[new, levels] = suffix
    largest = int(full[:, levels].max()) + 1 if n else 0
    if old is not None and len(old):
        largest = max(largest, int(old.codes[:, levels].max()) + 1)
    return full, largest
