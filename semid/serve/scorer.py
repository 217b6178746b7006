"""Requests -> the ranker's input -> scores, with items the artifact never saw handled at once (paper, App. A.1).

An item is *known* (in the artifact's token cache), *new* (not known, but representable: a SID representation
given the item's content embedding encodes it with the frozen RQ-VAE and tokenises the SID with the fitted
tokenizer; random hashing hashes any id; Dense Input projects the embedding), or *unknown* (not known and
not representable: refused, or with ``allow_unknown`` scored with an empty bag / zero content vector).

A new item is remembered in a bounded least-recently-used cache (``new_items.py``, keyed by id and embedding
digest), so it can be a later request's watch or history item.
Its SID is ``FrozenRqvae.encode`` of its float32 embedding, which is what ``semid sids assign --update`` computes,
and its tokens come from ``TokenCache.extend``, what ``semid tokens build --extend`` runs.

The input is built as ``semid.datamodules.ranking.RankingDataModule.make_batch`` builds it in training and
evaluation: the history capped to the last ``history_length`` items, the same three context features, the
same KJT (``semid.embeddings.build_kjt``) or Dense Input content; the parity test holds the two to equal scores.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from semid.core.ids import locate
from semid.serve.artifact import Artifact
from semid.serve.new_items import DEFAULT_CAPACITY, CacheStats, NewItemCache
from semid.serve.requests import Requests, UnknownItemError

if TYPE_CHECKING:
    from torchrec import KeyedJaggedTensor

    from semid.embeddings import TokenCache

KNOWN, NEW, UNKNOWN, NONE = 0, 1, 2, 3
STATUS = ("known", "new", "unknown")


@dataclass
class Scores:
    logits: np.ndarray  # float32 [B, T] (T = schema.tasks)
    status: np.ndarray  # int8 [B]: index into STATUS, of the candidate
    sid: np.ndarray | None  # int32 [B, L]: the candidate's SID (-1 rows: unknown); None for non-SID representations
    is_new: np.ndarray  # bool [B]: the candidate was introduced on its request's day

    @property
    def probabilities(self) -> np.ndarray:
        return torch.sigmoid(torch.from_numpy(self.logits)).numpy()  # as the training metrics compute them


class Scorer:
    """``score(requests) -> Scores``. Thread-safe (one batch at a time: the model and the learned items are shared)."""

    def __init__(self, artifact: Artifact, *, allow_unknown: bool = False,
                 new_item_capacity: int = DEFAULT_CAPACITY) -> None:
        self.artifact, self.schema, self.allow_unknown = artifact, artifact.schema, allow_unknown
        self.cache, self.encoder = artifact.cache, artifact.encoder
        self.needs_sids = self.cache is not None and self.cache.tokenizer.needs_sids
        self.dense = self.cache is None
        self._new = NewItemCache(new_item_capacity, (self.schema.levels or 0) if self.needs_sids else None,
                                 (self.schema.content_dim or 0) if self.dense else None)
        self._learned = self._new.view(np.zeros(0, np.int64))  # the new items the current batch names
        self._lock = threading.Lock()

    @property
    def learned_items(self) -> int:
        """How many items the scorer holds that it represented on the fly (at most ``new_item_capacity``)."""
        return len(self._new)

    def cache_stats(self) -> tuple[CacheStats, int, int]:
        """(counters, entries, capacity) of the new-item cache, read under the scoring lock."""
        with self._lock:
            return CacheStats(**vars(self._new.stats)), len(self._new), self._new.capacity

    def score(self, req: Requests, where: str = "requests", *, allow_unknown: bool | None = None) -> Scores:
        """Scores of ``req``; ``allow_unknown`` overrides the scorer's setting for this batch. Raises
        ``UnknownItemError`` (naming ``where`` and the field) for an item it cannot represent, unless allowed."""
        with self._lock, torch.inference_mode():
            try:
                return self._score(req, where, self.allow_unknown if allow_unknown is None else allow_unknown)
            finally:
                self._new.trim()

    # -- one batch ------------------------------------------------------------------------------------------

    def _score(self, req: Requests, where: str, allow_unknown: bool) -> Scores:
        from semid.datamodules import RankingBatch

        s = self.schema
        h_off, hist = _cap_history(req.history_offsets, req.history_item_ids, s.history_length)
        h_len = np.diff(h_off)
        self._learn(req, hist, h_len)
        named = np.concatenate([req.item_id, req.watch_item_id, hist])
        _, known = locate(self.artifact.items.item_id, named)
        self._learned = self._new.view(named[~known & (named >= 0)])
        cand, watch, hist_f = self._find(req.item_id), self._find(req.watch_item_id), self._find(hist)
        if not allow_unknown:
            self._check_unknown(where, ("item_id", req.item_id, cand), ("watch_item_id", req.watch_item_id, watch),
                                ("history_item_ids", hist, hist_f))
        src, pos = cand
        first = np.where(req.first_day >= 0, req.first_day, req.day)  # an unknown candidate is new on its day
        first[src == KNOWN] = self.artifact.items.first_day[pos[src == KNOWN]]
        first[src == NEW] = self._learned.first_day[pos[src == NEW]]
        age = np.maximum(req.day - first, 0)
        # semid.datamodules.ranking.RankingDataModule.make_batch's context, in its order and float64 -> float32 rounding
        context = np.stack([np.log1p(h_len) / 4.0, (req.watch_item_id < 0).astype(np.float64), np.log1p(age) / 3.0], 1)
        kjt, content = (None, self._content(cand, watch, hist_f, h_len)) if self.dense else \
            (self._kjt(cand, watch, hist_f, h_off), None)
        n = len(req)
        batch = RankingBatch(kjt=kjt, content=content, context=torch.from_numpy(context.astype(np.float32)),
                             labels=torch.zeros(n, len(s.tasks)), is_new=torch.zeros(n, dtype=torch.bool),
                             popularity=torch.zeros(n, dtype=torch.int8),
                             history_items=torch.from_numpy(h_len.astype(np.float32)),
                             day=int(req.day[0]) if n else s.default_day)
        logits = self.artifact.model(batch).float().numpy()
        status = np.select([src == KNOWN, src == NEW], [KNOWN, NEW], UNKNOWN).astype(np.int8)
        return Scores(logits, status, self._sids(cand), first == req.day)

    def _learn(self, req: Requests, hist: np.ndarray, h_len: np.ndarray) -> None:
        """Remember the candidates (and, for hashing, any item) the artifact does not know but can represent, in the
        new-item cache (``new_items.py``: a candidate whose embedding changed is encoded again)."""
        cand_first = np.where(req.first_day >= 0, req.first_day, req.day)  # default: new on the request's day
        if self.dense or self.needs_sids:  # content needed: only candidates come with it
            ids, first_day, ok = req.item_id, cand_first, req.has_embedding
        else:  # hashing represents any id
            ids = np.concatenate([req.item_id, req.watch_item_id, hist])
            first_day = np.concatenate([cand_first, req.day, np.repeat(req.day, h_len)])
            ok = ids >= 0
        _, known = locate(self.artifact.items.item_id, ids)
        cand = np.flatnonzero(ok & ~known)
        if not len(cand):
            return
        new_ids, first = np.unique(ids[cand], return_index=True)  # the first occurrence of an id in a batch wins
        take = cand[first]
        content = req.embedding[take] if (self.needs_sids or self.dense) and req.embedding is not None else None
        digests = NewItemCache.digests(content, len(take))
        stale = self._new.stale(new_ids, digests)  # not cached, or cached from another embedding
        if not stale.any():
            return
        new_ids, take = new_ids[stale], take[stale]
        digests = [d for d, s in zip(digests, stale) if s]
        codes = emb = None
        if self.needs_sids:
            assert self.encoder is not None and req.embedding is not None
            codes = self.encoder.encode(req.embedding[take], where="request embedding")
        if self.dense:
            assert req.embedding is not None
            emb = req.embedding[take]
        self._new.put(new_ids, self._new.first_days(new_ids, first_day[take]), digests, codes, emb)

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source [n] int8: KNOWN / NEW / UNKNOWN / NONE for ids < 0, position in that source's arrays [n])."""
        pos_k, in_known = locate(self.artifact.items.item_id, ids)
        pos_n, in_new = locate(self._learned.item_id, ids)
        src = np.select([ids < 0, in_known, in_new], [NONE, KNOWN, NEW], UNKNOWN).astype(np.int8)
        return src, np.where(src == KNOWN, pos_k, np.where(src == NEW, pos_n, -1))

    def _check_unknown(self, where: str, *roles: tuple[str, np.ndarray, tuple[np.ndarray, np.ndarray]]) -> None:
        for field, ids, (src, _) in roles:
            bad = src == UNKNOWN
            if bad.any():
                need = "give its content embedding in column 'embedding' of a request where it is the candidate" \
                    if field == "item_id" else "score it as a candidate with its content embedding first"
                raise UnknownItemError(
                    f"{where}: field '{field}': {int(bad.sum())} item id(s) the model does not know and cannot "
                    f"represent, e.g. {int(ids[bad][0])} ({need}, or pass --allow-unknown / \"allow_unknown\" to "
                    "score them with an empty representation)")

    def _kjt(self, cand: tuple[np.ndarray, np.ndarray], watch: tuple[np.ndarray, np.ndarray],
             hist: tuple[np.ndarray, np.ndarray], h_off: np.ndarray) -> "KeyedJaggedTensor":
        from semid.embeddings import build_kjt

        assert self.cache is not None
        roles = [cand, watch, hist]
        if any((src == NEW).any() for src, _ in roles):
            cache, rows = self._batch_cache(roles)
        else:
            cache, rows = self.cache, [np.where(src == KNOWN, pos, -1) for src, pos in roles]  # cache rows = item rows
        return build_kjt(cache, {"candidate": rows[0], "watch": rows[1]},
                         (h_off, rows[2]) if self.schema.use_history else None)

    def _batch_cache(self, roles: list[tuple[np.ndarray, np.ndarray]]) -> tuple["TokenCache", list[np.ndarray]]:
        """A cache of just the items this batch names, and each role's rows in it: known items' tokens copied, new
        ones tokenised by the artifact's tokenizer (``TokenCache.extend``); the cost is the batch's, not the
        catalogue's."""
        from semid.embeddings import TokenCache
        from semid.rqvae import SidTable

        cache = self.cache
        assert cache is not None
        known = np.unique(np.concatenate([pos[src == KNOWN] for src, pos in roles]))
        new = np.unique(np.concatenate([pos[src == NEW] for src, pos in roles]))
        local = TokenCache(cache.config, cache.tokenizer, cache.item_id[known], [j.take(known) for j in cache.jagged],
                           None, cache.space, None)
        new_ids = self._learned.item_id[new]
        sids = None
        if self.needs_sids:
            assert self.encoder is not None and self._learned.codes is not None
            sids = SidTable(new_ids, self._learned.codes[new], self.encoder.codebook_size, self.encoder.fingerprint)
        local = local.extend(new_ids, sids)
        rows = []
        for src, pos in roles:
            item = np.full(len(src), -1, np.int64)
            item[src == KNOWN] = cache.item_id[pos[src == KNOWN]]
            item[src == NEW] = self._learned.item_id[pos[src == NEW]]
            at, found = locate(local.item_id, item)
            rows.append(np.where(found, at, -1))
        return local, rows

    def _content(self, cand: tuple[np.ndarray, np.ndarray], watch: tuple[np.ndarray, np.ndarray],
                 hist: tuple[np.ndarray, np.ndarray], h_len: np.ndarray) -> dict[str, torch.Tensor]:
        """Dense Input: raw content embeddings per role, as make_batch computes them (zero: none / unknown)."""
        known = torch.from_numpy(self.artifact.items.embedding)  # type: ignore[arg-type]
        learned = torch.from_numpy(self._learned.embedding)  # type: ignore[arg-type]

        def vectors(src: np.ndarray, pos: np.ndarray) -> torch.Tensor:
            out = torch.zeros(len(src), known.shape[1])
            k, n = np.flatnonzero(src == KNOWN), np.flatnonzero(src == NEW)
            out[torch.from_numpy(k)] = known[torch.from_numpy(pos[k])]
            if len(n):
                out[torch.from_numpy(n)] = learned[torch.from_numpy(pos[n])]
            return out

        content = {"candidate": vectors(*cand), "watch": vectors(*watch)}
        if self.schema.use_history:
            seg = torch.from_numpy(np.repeat(np.arange(len(h_len)), h_len))
            total = torch.zeros(len(h_len), known.shape[1]).index_add_(0, seg, vectors(*hist))
            content["history"] = total / torch.from_numpy(np.maximum(h_len, 1).astype(np.float32)).unsqueeze(1)
        return content

    def _sids(self, cand: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
        if not self.needs_sids:
            return None
        assert self.cache is not None and self.cache.codes is not None and self._learned.codes is not None
        src, pos = cand
        out = np.full((len(src), self.cache.codes.shape[1]), -1, np.int32)
        k, n = src == KNOWN, src == NEW
        out[k] = self.cache.codes[pos[k]]
        out[n] = self._learned.codes[pos[n]]
        return out


def _cap_history(offsets: np.ndarray, ids: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Each request's last ``cap`` history items (training keeps the last ``history_length`` clicks)."""
    lengths = np.diff(offsets)
    keep = np.minimum(lengths, cap)
    if (keep == lengths).all():
        return offsets, ids
    starts = offsets[1:] - keep
    total = int(keep.sum())
    idx = np.repeat(starts - (np.cumsum(keep) - keep), keep) + np.arange(total)
    return np.concatenate([[0], np.cumsum(keep)]).astype(np.int64), ids[idx]
