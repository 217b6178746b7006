"""Per-item token cache: every item tokenised once, stored as CSR per table, so a batch is a gather.

File format (one ``.npz``, written atomically): ``item_id`` int64 [N] sorted; ``offsets__t`` int64 [N+1]
and ``values__t`` int64 per table t; ``codes`` int32 [N, L] (the SIDs the tokens came from, for SID
representations); ``state__i`` the tokenizer's learned state (the SentencePiece model); ``meta`` JSON
(config, tables, SID space, SID table and SPM fingerprints, the cache fingerprint).

Fingerprint chain: SID table -> SPM model (records the SID space and the training table) -> cache
(records the SID space, the SID table, the SPM model). ``TokenCache.load(path, sids)`` refuses SIDs
from another space or SIDs that differ for a cached item (``FingerprintMismatch``).

Building tokenises ``TOKENIZE_CHUNK`` items per call (bounded temporaries at any corpus size); the cache itself
holds O(items x tokens) integers (10M items of 3 SPM pieces: ~0.4 GB), never an embedding.

Dense Input (``kind: dense``) caches have no tables (``cache.tables == []``, ``cache.kind == "dense"``):
the ranker projects the raw content embedding; the cache still maps item ids to rows.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from semid.embeddings.registry import RepresentationConfig, build_tokenizer, load_representation_config, \
    parse_representation
from semid.embeddings.tokenizer import Jagged, SidSpace, TableSpec, Tokenizer
from semid.core.artifacts import atomic_path
from semid.core.errors import DataError, FingerprintMismatch, SemidError
from semid.core.fingerprint import fingerprint_bytes, fingerprint_of
from semid.core.ids import locate
from semid.core.progress import progress
from semid.rqvae import SidTable

FORMAT_VERSION = 1


class TokenCache:
    """Tokens of every item, per table. Build with ``build_token_cache``; immutable (``extend`` copies)."""

    def __init__(self, config: RepresentationConfig, tokenizer: Tokenizer, item_id: np.ndarray,
                 jagged: list[Jagged], codes: np.ndarray | None, space: SidSpace | None,
                 sid_table_fingerprint: str | None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.item_id = item_id
        self.tables: list[TableSpec] = tokenizer.tables()
        self.jagged = jagged
        self.codes = codes
        self.space = space
        self.sid_table_fingerprint = sid_table_fingerprint
        self._fingerprint: str | None = None
        if len(jagged) != len(self.tables) or any(len(j) != len(item_id) for j in jagged):
            raise SemidError("token cache: one CSR per table with one entry per item is required")

    # --- what the ranker uses ---------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def name(self) -> str:
        return self.config.name

    def __len__(self) -> int:
        return len(self.item_id)

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Cache row of each item id. A negative id the cache does not hold (the corpus's null marker)
        gives -1 (an empty bag); any other id the cache does not hold is an error."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        pos, found = locate(self.item_id, item_ids)
        missing = ~found & (item_ids >= 0)
        if missing.any():
            raise SemidError(f"{int(missing.sum())} item id(s) are not in token cache '{self.name}', e.g. "
                             f"{int(item_ids[missing].flat[0])} (extend it: `semid tokens build ... --extend`, or "
                             "TokenCache.extend with the new items' SIDs)")
        return np.where(found, pos, -1)

    def lookups_per_item(self) -> np.ndarray:
        """Embedding lookups per item (tokens over all tables), int64 [N]."""
        out = np.zeros(len(self.item_id), np.int64)
        for j in self.jagged:
            out += j.lengths
        return out

    def table_index(self, name: str) -> int:
        for i, t in enumerate(self.tables):
            if t.name == name:
                return i
        raise SemidError(f"token cache '{self.name}' has no table {name!r} (tables: "
                         f"{', '.join(t.name for t in self.tables) or 'none'})")

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            arrays = [self.item_id] + [a for j in self.jagged for a in (j.offsets, j.values)]
            self._fingerprint = fingerprint_of([
                "token-cache", dataclasses.asdict(self.config), [dataclasses.asdict(t) for t in self.tables],
                fingerprint_bytes(*arrays), self.space and self.space.fingerprint, self.sid_table_fingerprint,
                fingerprint_bytes(self.codes) if self.codes is not None else None, self.tokenizer.meta()])
        return self._fingerprint

    def meta(self) -> dict[str, object]:
        return {
            "format_version": FORMAT_VERSION, "kind": self.kind, "name": self.name,
            "config": dataclasses.asdict(self.config), "n_items": len(self),
            "tables": [dataclasses.asdict(t) for t in self.tables],
            "space": dataclasses.asdict(self.space) if self.space else None,
            "sid_table_fingerprint": self.sid_table_fingerprint, "tokenizer": self.tokenizer.meta(),
            "fingerprint": self.fingerprint,
        }

    # --- growth -----------------------------------------------------------------------------------

    def extend(self, item_ids: np.ndarray, sids: SidTable | None = None) -> "TokenCache":
        """A cache that also holds ``item_ids`` (new items tokenised from their frozen SIDs with the
        fitted tokenizer; ids already cached keep their tokens). Cache rows shift: re-run ``rows_of``."""
        ids = np.unique(np.asarray(item_ids, np.int64))
        codes_new = None
        if self.tokenizer.needs_sids:
            if sids is None:
                raise SemidError(f"extending token cache '{self.name}' needs the new items' SIDs (a SID table)")
            _check_sids(self, sids, where="extend")
        known = np.isin(ids, self.item_id)
        new = ids[~known]
        if self.tokenizer.needs_sids:
            assert sids is not None
            codes_new = sids.lookup(new)
        jag_new = self.tokenizer.tokenize(new, codes_new)
        all_ids = np.concatenate([self.item_id, new])
        order = np.argsort(all_ids, kind="stable")
        jagged = [Jagged.concat([a, b]).take(order) for a, b in zip(self.jagged, jag_new)]
        codes = None
        if self.codes is not None and codes_new is not None:
            codes = np.concatenate([self.codes, codes_new.astype(np.int32)])[order]
        return TokenCache(self.config, self.tokenizer, all_ids[order], jagged, codes, self.space,
                          sids.fingerprint if sids is not None and self.tokenizer.needs_sids
                          else self.sid_table_fingerprint)

    # --- files ------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        state = self.tokenizer.state()
        meta = {**self.meta(), "state_keys": list(state)}
        arrays: dict[str, np.ndarray] = {"item_id": self.item_id,
                                         "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        for i, j in enumerate(self.jagged):
            arrays[f"offsets__{i}"] = j.offsets
            arrays[f"values__{i}"] = j.values
        if self.codes is not None:
            arrays["codes"] = self.codes
        for i, v in enumerate(state.values()):
            arrays[f"state__{i}"] = np.frombuffer(v, np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
                np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path, sids: SidTable | None = None) -> "TokenCache":
        """Read a cache; with ``sids``, refuse SIDs from another space or that differ for a cached item."""
        path = Path(path)
        if not path.exists():
            raise DataError(path, None, "token cache file is missing", "build it with `semid tokens build`")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError) as e:
            raise DataError(path, None, f"not a token cache ({e})", "rebuild it with `semid tokens build`") from None
        if "meta" not in data:
            raise DataError(path, "meta", "missing", "rebuild it with `semid tokens build`")
        meta = json.loads(data["meta"].tobytes())
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise DataError(path, "meta", f"format version {meta['format_version']} is newer than this semid")
        config = parse_representation(meta["config"], f"{path}: config")
        space = SidSpace(**meta["space"]) if meta.get("space") else None
        state = {k: data[f"state__{i}"].tobytes() for i, k in enumerate(meta.get("state_keys", []))}
        tokenizer = build_tokenizer(config)
        tokenizer.restore(space, state)
        n_tables = len(meta["tables"])
        try:
            jagged = [Jagged(data[f"offsets__{i}"], data[f"values__{i}"]) for i in range(n_tables)]
        except KeyError as e:
            raise DataError(path, str(e).strip("'"), "array is missing (truncated file)", "rebuild it") from None
        cache = cls(config, tokenizer, data["item_id"], jagged, data.get("codes"), space,
                    meta.get("sid_table_fingerprint"))
        if cache.fingerprint != meta["fingerprint"]:
            raise DataError(path, None, f"content fingerprint {cache.fingerprint} does not match the recorded "
                            f"{meta['fingerprint']} (file edited or damaged)", "rebuild it with `semid tokens build`")
        if sids is not None and tokenizer.needs_sids:
            _check_sids(cache, sids, where=str(path))
        return cache


def _check_sids(cache: TokenCache, sids: SidTable, where: str) -> None:
    """The SIDs must be of the cache's space, and agree on every cached item they cover."""
    assert cache.space is not None
    if sids.space_fingerprint != cache.space.fingerprint:
        raise FingerprintMismatch(
            f"{where}: token cache '{cache.name}' was built in SID space {cache.space.fingerprint}, but the SID "
            f"table given is of space {sids.space_fingerprint} (another RQ-VAE or L/K; rebuild the cache "
            "from these SIDs with `semid tokens build`)")
    if sids.fingerprint == cache.sid_table_fingerprint or cache.codes is None:
        return
    pos, both = locate(sids.item_id, cache.item_id)
    differ = both & (sids.codes[pos] != cache.codes).any(axis=1)
    if differ.any():
        raise FingerprintMismatch(
            f"{where}: {int(differ.sum())} cached item(s) have different SIDs in the table given (e.g. item "
            f"{int(cache.item_id[differ][0])}); the cache came from SID table {cache.sid_table_fingerprint}, not "
            f"{sids.fingerprint} (rebuild the cache with `semid tokens build`)")


# items per tokenize call: bounds a tokenizer's temporaries (SPM's Python lists of pieces, ~100 B per item; n-gram
# index arrays) at any corpus size; every tokenizer maps each item on its own, so the result is the same
TOKENIZE_CHUNK = 1_000_000


def tokenize_in_chunks(tokenizer: Tokenizer, item_ids: np.ndarray, codes: np.ndarray | None,
                       chunk: int | None = None) -> list[Jagged]:
    """``tokenizer.tokenize`` of every item, ``chunk`` (default ``TOKENIZE_CHUNK``) items per call, one CSR per
    table."""
    chunk = chunk or TOKENIZE_CHUNK
    if len(item_ids) <= chunk:
        return tokenizer.tokenize(item_ids, codes)
    parts = [tokenizer.tokenize(item_ids[s:s + chunk], None if codes is None else codes[s:s + chunk])
             for s in progress(range(0, len(item_ids), chunk), "tokenize", unit="chunk")]
    return [Jagged.concat([p[t] for p in parts]) for t in range(len(parts[0]))]


def build_token_cache(representation_cfg: RepresentationConfig | str | Path, sids: SidTable | None,
                      item_ids: np.ndarray, impressions: np.ndarray | None) -> TokenCache:
    """Fit the representation's tokenizer and tokenise ``item_ids`` once.

    ``impressions``: per-item impression counts aligned with ``item_ids`` (SPM learns its vocabulary from
    the SIDs of items with impressions > 0, weighted by them); other kinds ignore it.
    """
    cfg = representation_cfg if not isinstance(representation_cfg, (str, Path)) \
        else load_representation_config(representation_cfg)
    ids = np.asarray(item_ids, np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if len(ids) and (np.diff(ids) == 0).any():
        raise SemidError(f"item ids must be unique, e.g. {int(ids[:-1][np.diff(ids) == 0][0])} appears twice")
    imp = None
    if impressions is not None:
        imp = np.asarray(impressions)
        if imp.shape != np.asarray(item_ids).shape:
            raise SemidError(f"impressions has shape {imp.shape} but item_ids has {np.asarray(item_ids).shape}; "
                             "pass one count per item, in the same order")
        imp = imp[order]
    tokenizer = build_tokenizer(cfg)
    space = codes = None
    if tokenizer.needs_sids:
        if sids is None:
            raise SemidError(f"representation '{cfg.name}' ({cfg.kind}) is built from SIDs: pass a SID table "
                             "(`--sids sids.parquet`, made by `semid sids assign`)")
        space = SidSpace.of(sids)
        codes = sids.lookup(ids).astype(np.int32)
    tokenizer.fit(space, sids, ids, imp)
    jagged = tokenize_in_chunks(tokenizer, ids, codes)
    return TokenCache(cfg, tokenizer, ids, jagged, codes, space,
                      sids.fingerprint if (sids is not None and tokenizer.needs_sids) else None)
