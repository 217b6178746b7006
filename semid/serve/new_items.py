"""Items the artifact does not know, represented on the fly: a least-recently-used cache bounded by entries.

Policy (``semid serve --new-item-cache N``, default ``DEFAULT_CAPACITY``):

* an entry is one item id with what represents it: its SID (SID representations), its content embedding (Dense
  Input) or nothing (random hashing represents any id), the day it was first seen, and the digest of the
  embedding it was computed from;
* a candidate that comes with an embedding is a *hit* only if the id **and** the embedding's digest match the
  entry; the same id with another embedding is encoded again and replaces the entry (``replaced``), so a new
  embedding for an id is never silently ignored; the entry keeps the day the id was first seen;
* a watch or history item (which comes without an embedding) uses the id's entry, if any;
* every use moves an entry to the most-recently-used end; after each batch the least recently used entries are
  evicted until at most ``capacity`` remain (during a batch the cache may hold that batch's new items on top, so
  every item a batch names is found while it is scored);
* an evicted item is unknown again: as a candidate it is encoded anew from its embedding, as a watch or history
  item it is refused (422) unless ``allow_unknown``.

Example::

    >>> import numpy as np
    >>> cache = NewItemCache(capacity=2)
    >>> d = NewItemCache.digests(np.ones((3, 4), np.float32))
    >>> cache.put(np.array([7, 8, 9]), np.zeros(3, np.int64), d, np.zeros((3, 2), np.int32), None)
    >>> cache.trim(), len(cache), cache.stats.evictions
    (None, 2, 1)
    >>> sorted(cache.view(np.array([7, 8, 9])).item_id.tolist())
    [8, 9]
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

DEFAULT_CAPACITY = 100_000  # SIDs: ~100k x (L int32 + ~120 B of Python); Dense Input: + D float32 each


@dataclass
class CacheStats:
    """Counters since the cache was made (``/metrics`` exports them)."""

    hits: int = 0  # a batch used an entry it did not (re)compute
    misses: int = 0  # an item (re)computed: not cached, or cached from another embedding
    replaced: int = 0  # of the misses: the id was cached from another embedding
    evictions: int = 0


@dataclass
class Learned:
    """Entries as arrays sorted by id (what the scorer looks items up in)."""

    item_id: np.ndarray  # int64 [M]
    first_day: np.ndarray  # int64 [M]
    codes: np.ndarray | None  # int32 [M, L] (SID representations)
    embedding: np.ndarray | None  # float32 [M, D] (Dense Input)


@dataclass
class _Entry:
    digest: bytes | None
    first_day: int
    codes: np.ndarray | None  # int32 [L]
    embedding: np.ndarray | None  # float32 [D]


class NewItemCache:
    """LRU of new items, bounded by ``capacity`` entries (see the module docstring). Not thread-safe: the scorer
    holds its lock around every call."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, levels: int | None = None, dim: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.levels, self.dim = capacity, levels, dim
        self.stats = CacheStats()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._computed: set[int] = set()  # ids (re)computed in the current batch: not hits

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def digests(embedding: np.ndarray | None, n: int = 0) -> list[bytes | None]:
        """The digest of each float32 row (``None`` x ``n`` without embeddings): 16 bytes of BLAKE2b, so two
        different embeddings of one id collide with probability ~2^-128."""
        if embedding is None:
            return [None] * n
        rows = np.ascontiguousarray(embedding, np.float32)
        return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]

    def stale(self, ids: np.ndarray, digests: list[bytes | None]) -> np.ndarray:
        """bool [n]: the (distinct) ``ids`` whose entry is missing or was computed from another embedding."""
        out = np.ones(len(ids), bool)
        for j, (i, d) in enumerate(zip(ids.tolist(), digests)):
            e = self._entries.get(i)
            if e is not None and e.digest == d:
                out[j] = False
        return out

    def first_days(self, ids: np.ndarray, default: np.ndarray) -> np.ndarray:
        """The day each id was first seen: its entry's, else ``default``."""
        out = default.astype(np.int64, copy=True)
        for j, i in enumerate(ids.tolist()):
            e = self._entries.get(i)
            if e is not None:
                out[j] = e.first_day
                self.stats.replaced += 1
        return out

    def put(self, ids: np.ndarray, first_day: np.ndarray, digests: list[bytes | None], codes: np.ndarray | None,
            embedding: np.ndarray | None) -> None:
        """Insert or replace the entries of distinct ``ids`` (most recently used); ``trim`` bounds the size."""
        for j, i in enumerate(ids.tolist()):
            self._entries[i] = _Entry(digests[j], int(first_day[j]), None if codes is None else codes[j].copy(),
                                      None if embedding is None else embedding[j].copy())
            self._entries.move_to_end(i)
            self._computed.add(i)
        self.stats.misses += len(ids)

    def view(self, ids: np.ndarray) -> Learned:
        """The entries of those ``ids`` that are cached, as sorted arrays; each is marked used."""
        found = sorted(i for i in set(ids.tolist()) if i in self._entries)
        entries = [self._entries[i] for i in found]
        for i in found:
            self._entries.move_to_end(i)
        self.stats.hits += sum(i not in self._computed for i in found)
        codes = emb = None
        if self.levels is not None:
            codes = np.stack([e.codes for e in entries]) if entries else np.zeros((0, self.levels), np.int32)
        if self.dim is not None:
            emb = np.stack([e.embedding for e in entries]) if entries else np.zeros((0, self.dim), np.float32)
        return Learned(np.asarray(found, np.int64), np.asarray([e.first_day for e in entries], np.int64), codes, emb)

    def trim(self) -> None:
        """End of a batch: evict the least recently used entries beyond ``capacity``."""
        self._computed.clear()
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.stats.evictions += 1
