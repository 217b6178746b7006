"""The SID table (``sids.parquet``): item_id -> L codes in [0, K), chained to the RQ-VAE that made it.

Two fingerprints:
* ``space_fingerprint`` names the SID *space* (the frozen RQ-VAE, L, K, and the collision suffix when
  there is one). Items added later by the same frozen model keep it, so an SPM vocabulary stays valid.
* ``fingerprint`` names the table's *content* (ids and codes); token caches record it.

Collision suffix (``collision_suffix``): the last level is not a code of the quantizer but numbers the
items that share the quantizer's full SID (the first L-1 levels): 0, 1, 2, ... in order of the item's
distance to its reconstruction (ties by item id), so every item has a unique SID. Its values lie in
[0, K) like every other level, so a tokenizer sees one more level and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from semid.core.artifacts import atomic_path
from semid.core.errors import DataError, FingerprintMismatch, SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_of
from semid.core.ids import locate

_META = b"semid.rqvae.sid_table"


@dataclass(frozen=True)
class SidTable:
    """Items and their Semantic IDs: ``item_id`` [N] sorted, ``codes`` [N, L] in [0, K), and the fingerprint of
    the quantizer that made them (``semid.sid_table`` builds one from arrays).

    >>> import semid
    >>> t = semid.sid_table([5, 2], [[1, 0], [0, 3]], codebook_size=4)
    >>> t.levels, t.lookup([5]).tolist()
    (2, [[1, 0]])
    """

    item_id: np.ndarray  # int64 [N], sorted ascending, unique
    codes: np.ndarray  # int32 [N, L], each in [0, codebook_size)
    codebook_size: int  # K
    rqvae_fingerprint: str
    corpus_fingerprint: str | None = None
    collision_suffix: bool = False  # the last level numbers the items sharing the levels before it

    def __post_init__(self) -> None:
        if self.codes.ndim != 2 or len(self.codes) != len(self.item_id):
            raise SemidError(f"SID table: codes must be [N, L] with N={len(self.item_id)}, got {self.codes.shape}")
        if len(self.item_id) and (np.diff(self.item_id) <= 0).any():
            raise SemidError("SID table: item ids must be unique and sorted ascending")
        if len(self.codes) and (self.codes.min() < 0 or self.codes.max() >= self.codebook_size):
            raise SemidError(f"SID table: codes outside [0, {self.codebook_size}) (max {int(self.codes.max())})")
        self.item_id.flags.writeable = False
        self.codes.flags.writeable = False

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

    @property
    def quantizer_levels(self) -> int:
        """Levels the quantizer assigned (L, without the collision suffix)."""
        return self.levels - int(self.collision_suffix)

    @cached_property
    def space_fingerprint(self) -> str:
        # a table without suffix keeps the fingerprint it had before suffixes existed
        suffix = ["collision-suffix"] if self.collision_suffix else []
        return fingerprint_of(["sid-space", self.rqvae_fingerprint, self.levels, self.codebook_size, *suffix])

    @cached_property
    def fingerprint(self) -> str:
        """Hashes every id and code (~0.1 s per million items): computed once per table, whose arrays are
        read-only so the cached value cannot go stale."""
        return fingerprint_of(["sid-table", self.space_fingerprint, fingerprint_bytes(self.item_id, self.codes)])

    def __len__(self) -> int:
        return len(self.item_id)

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Row of each item id; unknown ids raise (an item without a SID cannot be represented)."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        pos, ok = locate(self.item_id, item_ids)
        if not ok.all():
            raise SemidError(f"{int((~ok).sum())} item(s) have no SID, e.g. {int(item_ids[~ok][0])} "
                             "(run `semid sids assign` for the new items)")
        return pos

    def lookup(self, item_ids: np.ndarray) -> np.ndarray:
        return self.codes[self.rows_of(item_ids)]

    def extend(self, item_ids: np.ndarray, codes: np.ndarray) -> "SidTable":
        """Add new items; an id already present must keep exactly its SID (frozen assignment)."""
        item_ids = np.asarray(item_ids, np.int64)
        codes = np.asarray(codes, np.int32)
        pos, known = locate(self.item_id, item_ids)
        if known.any() and not (self.codes[pos[known]] == codes[known]).all():
            raise FingerprintMismatch("new SIDs would change existing items' SIDs: the table was made by a "
                                      "different RQ-VAE (assign with the model that made it)")
        ids = np.concatenate([self.item_id, item_ids[~known]])
        allc = np.concatenate([self.codes, codes[~known]])
        o = np.argsort(ids, kind="stable")
        return SidTable(ids[o], allc[o], self.codebook_size, self.rqvae_fingerprint, self.corpus_fingerprint,
                        self.collision_suffix)


def write_sid_table(table: SidTable, path: str | Path) -> Path:
    path = Path(path)
    dtype = pa.int16() if table.codebook_size <= np.iinfo(np.int16).max + 1 else pa.int32()
    np_dtype = np.int16 if dtype == pa.int16() else np.int32
    sid = pa.FixedSizeListArray.from_arrays(pa.array(table.codes.astype(np_dtype).reshape(-1), dtype), table.levels)
    meta = fingerprint_meta(table)
    t = pa.table({"item_id": pa.array(table.item_id, pa.int64()), "sid": sid}).replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(t, tmp)
    return path


def fingerprint_meta(table: SidTable) -> dict[bytes, bytes]:
    import json

    meta = {"levels": table.levels, "codebook_size": table.codebook_size,
            "rqvae_fingerprint": table.rqvae_fingerprint, "corpus_fingerprint": table.corpus_fingerprint,
            "space_fingerprint": table.space_fingerprint, "fingerprint": table.fingerprint}
    if table.collision_suffix:  # absent otherwise: a table without suffix reads as before
        meta.update({"collision_suffix": True, "suffix_level": table.levels - 1,
                     "suffix_codebook_size": table.codebook_size})
    return {_META: json.dumps(meta).encode()}


# what every table's metadata holds, with its type (``fingerprint_meta`` writes them)
_REQUIRED_META = {"levels": int, "codebook_size": int, "rqvae_fingerprint": str, "fingerprint": str}
_REWRITE = "re-create it with `semid sids assign --overwrite`"


def _metadata(path: Path, raw: bytes) -> dict[str, object]:
    """The table's semid metadata, checked: JSON, a mapping, the required keys with their types."""
    import json

    try:
        meta = json.loads(raw)
    except ValueError:
        raise DataError(path, None, "its semid metadata is not JSON (the file was edited or damaged)",
                        _REWRITE) from None
    if not isinstance(meta, dict):
        raise DataError(path, None, f"its semid metadata is a JSON {type(meta).__name__}, not a mapping", _REWRITE)
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise DataError(path, None, f"its semid metadata lacks {', '.join(missing)}", _REWRITE)
    for key, tp in _REQUIRED_META.items():
        v = meta[key]
        if not isinstance(v, tp) or isinstance(v, bool) or (tp is int and v < 1):  # type: ignore[operator]
            want = "a positive integer" if tp is int else "a string"
            raise DataError(path, None, f"its semid metadata has {key}={v!r}, not {want}", _REWRITE)
    return meta


def read_sid_table(path: str | Path, *, expect_rqvae: str | None = None) -> SidTable:
    """The SID table at ``path``, checked against its recorded fingerprint (and made by the quantizer
    ``expect_rqvae`` when given). A missing, damaged or foreign file is a one-line ``DataError`` naming it::

        >>> import numpy as np, tempfile, os
        >>> t = SidTable(np.array([3, 5]), np.array([[0, 1], [1, 1]], np.int32), 4, "q")
        >>> p = write_sid_table(t, os.path.join(tempfile.mkdtemp(), "sids.parquet"))
        >>> read_sid_table(p).lookup(np.array([5])).tolist()
        [[1, 1]]
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, "file is missing", "create it with `semid sids assign`")
    try:
        t = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(path, None, f"not a readable Parquet file, truncated or damaged ({str(e).splitlines()[0]})",
                        _REWRITE) from None
    raw = (t.schema.metadata or {}).get(_META)
    if raw is None:
        raise DataError(path, None, "no semid metadata (not written by `semid sids assign`)",
                        "re-create it with `semid sids assign`")
    meta = _metadata(path, raw)
    for col in ("item_id", "sid"):
        if col not in t.column_names:
            raise DataError(path, col, "column is missing")
    tp = t.schema.field("sid").type
    if not pa.types.is_fixed_size_list(tp) or tp.list_size != meta["levels"]:
        raise DataError(path, "sid", f"type {tp} is not fixed_size_list<int>[{meta['levels']}]")
    codes = t["sid"].combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.int32)
    codes = codes.reshape(-1, meta["levels"])
    k = meta["codebook_size"]
    if len(codes) and (codes.min() < 0 or codes.max() >= k):
        raise DataError(path, "sid", f"codes outside [0, {k}) (found {int(codes.min())}..{int(codes.max())})",
                        "the SIDs were not made with this codebook size; re-run `semid sids assign`")
    ids = t["item_id"].to_numpy().astype(np.int64)
    o = np.argsort(ids, kind="stable")
    if len(ids) and (np.diff(ids[o]) == 0).any():
        raise DataError(path, "item_id", "duplicate ids", "keep one SID per item")
    table = SidTable(ids[o], codes[o], k, meta["rqvae_fingerprint"], meta.get("corpus_fingerprint"),
                     bool(meta.get("collision_suffix", False)))
    if table.fingerprint != meta["fingerprint"]:
        raise DataError(path, "sid", "content does not match its recorded fingerprint (file edited or damaged)",
                        "re-create it with `semid sids assign`")
    if expect_rqvae is not None and table.rqvae_fingerprint != expect_rqvae:
        raise FingerprintMismatch(f"{path}: SIDs were made by RQ-VAE {table.rqvae_fingerprint}, not by the "
                                  f"model given ({expect_rqvae}); re-run `semid sids assign` with that model")
    return table
