"""The RQ-VAE's data: items sampled in proportion to their impressions (paper: a random sample of
*impressed* items), plus a fixed held-out item sample for SID health.

Impression counts are streamed one day at a time from ``impressions/day=*/``. The batch stream is a
function of the seed alone, and a fit resumed from a checkpoint at step N continues it at batch N (the
same batches an uninterrupted run trains on).

Memory: batches are drawn from a *training pool* whose embeddings are held in memory. While the impressed
items' embeddings fit in ``POOL_BYTES`` (1 GiB: 1M items of dim 256, so every corpus up to that size,
``small`` and ``tiny`` included) the pool is every impressed training item with its impression share, exactly
the paper's sampling. Above it the pool is the distinct items of ``POOL_BYTES / (4 D)`` draws with
replacement by impression share (``impression_draws``: seeded by ``train.seed``, so deterministic), each
weighted by how often it was drawn: the same distribution in expectation, with memory that stops growing
with the corpus. ``RqvaeDataModule(all_embeddings=False)`` then reads only the pool's and the hold-out's
embeddings (one pass over items.parquet, a record batch at a time); with ``all_embeddings=True`` (the
default) ``items.embedding`` holds every item's, for a caller that needs them all (all-items SID health).

Behaviour-aware RQ-VAE (``cooccur``: a ``CooccurConfig``): each batch also carries ``pair_batch_size``
co-engaged pairs (``semid.rqvae.cooccur``) of the days ``[cooccur.first_day, cooccur.last_day]`` only, drawn from
a stream of their own, so the content batches are the plain RQ-VAE's. Pairs touching a held-out item are left
out: the hold-out stays unseen by behaviour too.
"""
from __future__ import annotations

import sys

from dataclasses import dataclass
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from semid.datamodules import Corpus, Items
from semid.core.errors import DataError, SemidError
from semid.core.progress import progress
from semid.rqvae.config import CooccurConfig
from semid.rqvae.cooccur import CoEngagedPairs, PairSampler, co_engaged_pairs


def impression_counts(corpus: Corpus, items: Items, min_day: int | None = None,
                      max_day: int | None = None) -> np.ndarray:
    """Impressions per item row [N] over days [min_day, max_day] (inclusive; None = open)."""
    counts = np.zeros(len(items), dtype=np.int64)
    days = [d for d in corpus.days() if (min_day is None or d >= min_day) and (max_day is None or d <= max_day)]
    if not days:
        raise SemidError(f"{corpus.impressions_path}: no impression days within [{min_day}, {max_day}] "
                         f"(days present: {corpus.days()[:1]}..{corpus.days()[-1:]}); fix train.min_day/max_day")
    for day in progress(days, "impressions", unit="day"):
        ids = corpus.read_day(day, columns=["item_id"])["item_id"].to_numpy()
        rows = items.index_of(ids.astype(np.int64))
        if (rows < 0).any():
            bad = int(ids[rows < 0][0])
            raise DataError(corpus.impressions_path / f"day={day:04d}", "item_id",
                            f"{int((rows < 0).sum())} impression(s) name items missing from items.parquet "
                            f"(e.g. {bad})", "run `semid data validate` and fix the corpus")
        counts += np.bincount(rows, minlength=len(items))
    return counts


@dataclass
class RqvaeSample:
    """Which item rows train (with sampling weights) and which are held out."""

    train_rows: np.ndarray  # int64 [M], impressed items not held out
    train_weights: np.ndarray  # float64 [M], impressions of each, sums to 1
    holdout_rows: np.ndarray  # int64 [H]


MAX_HOLDOUT_SHARE = 0.1  # a health hold-out never takes more than this share of the items from training


def split_items(counts: np.ndarray, holdout_items: int, seed: int) -> RqvaeSample:
    """Hold out a random item sample (from all items), train on the impressed rest by impressions. A
    hold-out larger than ``MAX_HOLDOUT_SHARE`` of the items is scaled down to it, with a message."""
    n = len(counts)
    cap = int(n * MAX_HOLDOUT_SHARE)
    if holdout_items > cap:
        print(f"semid: warning: train.holdout_items={holdout_items:,} is more than {MAX_HOLDOUT_SHARE:.0%} of the "
              f"corpus's {n:,} items: holding out {cap:,} for SID health (set train.holdout_items to choose)",
              file=sys.stderr)
        holdout_items = cap
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4099]))
    holdout = np.sort(rng.choice(n, size=min(holdout_items, n), replace=False)) if holdout_items else \
        np.zeros(0, np.int64)
    mask = counts > 0
    mask[holdout] = False
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        raise SemidError("no impressed items left to train the RQ-VAE on (lower train.holdout_items, or widen "
                         "train.min_day/max_day)")
    w = counts[rows].astype(np.float64)
    return RqvaeSample(rows.astype(np.int64), w / w.sum(), holdout.astype(np.int64))


def impression_draws(sample: RqvaeSample, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct item rows [n], times each was drawn [n]) of ``draws`` draws with replacement by impression
    share: the RQ-VAE's training distribution, for a quantizer that fits on one sample (residual k-means)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8081]))
    cum = np.cumsum(sample.train_weights)
    pick = np.searchsorted(cum, rng.random(draws) * cum[-1], side="right")
    rows, times = np.unique(sample.train_rows[np.minimum(pick, len(cum) - 1)], return_counts=True)
    return rows.astype(np.int64), times.astype(np.int64)


# bytes of training-pool embeddings held in memory (module docstring): 1M items at dim 256, 128k at the paper's 2048
POOL_BYTES = 1 << 30


@dataclass
class TrainingPool:
    """The item rows the RQ-VAE's batches are drawn from, with their sampling weights."""

    rows: np.ndarray  # int64 [P], item rows
    weights: np.ndarray  # float64 [P], sums to 1
    drawn: bool  # a pool of impression-weighted draws (more impressed items than POOL_BYTES holds)


def training_pool(sample: RqvaeSample, dim: int, seed: int, max_bytes: int = POOL_BYTES) -> TrainingPool:
    """Every impressed training item by its impression share when their embeddings fit in ``max_bytes``,
    else the distinct items of ``max_bytes // (4 dim)`` draws by impression share, weighted by draws."""
    cap = max(1, max_bytes // (4 * max(dim, 1)))
    if len(sample.train_rows) <= cap:
        return TrainingPool(sample.train_rows, sample.train_weights, False)
    rows, times = impression_draws(sample, cap, seed)
    return TrainingPool(rows, times / times.sum(), True)


class ImpressionWeightedBatches(IterableDataset):
    """``steps`` batches of item embeddings drawn with replacement by impression share.

    The first batch has ``first_batch_size`` items: the model runs k-means on it. Iteration yields batches
    ``start_step .. steps-1`` of that stream (a resumed fit); ``len`` stays ``steps``, the epoch's length,
    as Lightning counts a resumed epoch's batches from the checkpoint's position.

    With ``pairs`` (a sampler and the embeddings [n, D] its pair rows index) every batch is
    ``(x, x_a, x_b)``: the same ``x`` as without, and one step's co-engaged pairs.
    """

    def __init__(self, embedding: torch.Tensor, rows: np.ndarray, weights: np.ndarray, batch_size: int,
                 steps: int, first_batch_size: int, seed: int, start_step: int = 0,
                 pairs: tuple[PairSampler, torch.Tensor] | None = None) -> None:
        self.embedding, self.rows, self.batch_size, self.steps = embedding, rows, batch_size, steps
        self.first_batch_size, self.seed, self.start_step = first_batch_size, seed, start_step
        self.cum = np.cumsum(weights)
        self.pairs = pairs

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and \
            torch.distributed.is_initialized() else 0
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7, rank, worker]))
        pair_rng = self.pairs[0].stream(rank, worker) if self.pairs is not None else None
        for step in range(self.steps):
            size = self.first_batch_size if step == 0 else self.batch_size
            u = rng.random(size)  # drawn for skipped steps too: batch N is the same whatever the start
            ab = self.pairs[0].draw(pair_rng) if self.pairs is not None and pair_rng is not None else None
            if step < self.start_step:
                continue
            # inverse-CDF sampling: O(B log M) per batch, fine for millions of items
            pick = np.searchsorted(self.cum, u * self.cum[-1], side="right")
            x = self.embedding[self.rows[np.minimum(pick, len(self.rows) - 1)]]
            if ab is None or self.pairs is None:
                yield x
            else:
                yield x, self.pairs[1][ab[:, 0]], self.pairs[1][ab[:, 1]]


class RqvaeDataModule(L.LightningDataModule):
    """Items of a corpus for RQ-VAE training; ``setup`` streams impression counts and reads the embeddings the
    batches need (``all_embeddings``: every item's, in ``items.embedding``; else only the training pool's and
    the hold-out's, ``items.embedding`` is None)."""

    def __init__(self, corpus: Corpus, *, batch_size: int, steps: int, first_batch_size: int, holdout_items: int,
                 seed: int, min_day: int | None = None, max_day: int | None = None,
                 eval_batch_size: int = 8192, all_embeddings: bool = True, pool_bytes: int = POOL_BYTES,
                 cooccur: CooccurConfig | None = None) -> None:
        super().__init__()
        self.corpus = corpus
        self.batch_size, self.steps, self.first_batch_size = batch_size, steps, first_batch_size
        self.holdout_items, self.seed = holdout_items, seed
        self.min_day, self.max_day = min_day, max_day
        self.eval_batch_size = eval_batch_size
        self.all_embeddings, self.pool_bytes = all_embeddings, pool_bytes
        self.items: Items | None = None
        self.sample: RqvaeSample | None = None
        self.pool: TrainingPool | None = None
        self.counts: np.ndarray | None = None
        self.holdout_embedding: np.ndarray | None = None  # float32 [H, D]
        self.cooccur = cooccur
        self.pairs: CoEngagedPairs | None = None  # co-engaged pairs (cooccur), rows into ``_pair_embedding``

    def setup(self, stage: str | None = None) -> None:
        if self.items is not None:
            return
        items = self.corpus.read_items(columns=["item_id", "embedding", "first_day"], embeddings=self.all_embeddings)
        if len(items) == 0:
            raise DataError(self.corpus.items_path, None, "no items", "the corpus needs items to train on")
        self.counts = impression_counts(self.corpus, items, self.min_day, self.max_day)
        self.sample = split_items(self.counts, self.holdout_items, self.seed)
        self.pool = training_pool(self.sample, items.dim, self.seed, self.pool_bytes)
        holdout = self.sample.holdout_rows
        if items.embedding is not None:
            # batches index the full matrix by item row: bit-identical to drawing from the pool's own copy
            self._embedding, self._pool_rows = torch.from_numpy(items.embedding), self.pool.rows
            self.holdout_embedding = items.embedding[holdout]
        else:
            both = self.corpus.read_embeddings(np.concatenate([self.pool.rows, holdout]))
            self._embedding = torch.from_numpy(both[:len(self.pool.rows)])
            self._pool_rows = np.arange(len(self.pool.rows), dtype=np.int64)
            self.holdout_embedding = both[len(self.pool.rows):]
        if self.cooccur is not None:
            assert self.cooccur.last_day is not None, "cooccur.last_day is checked by RqvaeConfig"
            pairs = co_engaged_pairs(self.corpus, items, self.cooccur.first_day, self.cooccur.last_day, holdout)
            used, local = np.unique(pairs.rows, return_inverse=True)
            emb = items.embedding[used] if items.embedding is not None else self.corpus.read_embeddings(used)
            self._pair_embedding = torch.from_numpy(np.ascontiguousarray(emb))
            self.pairs = CoEngagedPairs(local.reshape(-1, 2).astype(np.int64), pairs.counts, pairs.days)
            self.pair_items = used  # item rows [n] that some training pair holds
        self.items = items

    @property
    def input_dim(self) -> int:
        assert self.items is not None, "call setup() first"
        return self.items.dim

    def train_dataloader(self) -> DataLoader:
        assert self.pool is not None
        # Lightning restores a checkpoint's step before it asks for the loader: continue the stream there
        start = self.trainer.global_step if self.trainer is not None else 0
        pairs = None
        if self.pairs is not None and self.cooccur is not None:
            pairs = (PairSampler(self.pairs, self.cooccur.pair_batch_size, self.seed), self._pair_embedding)
        ds = ImpressionWeightedBatches(self._embedding, self._pool_rows, self.pool.weights, self.batch_size,
                                       self.steps, self.first_batch_size, self.seed, start, pairs)
        return DataLoader(ds, batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        assert self.holdout_embedding is not None
        x = torch.from_numpy(self.holdout_embedding)
        return DataLoader(TensorDataset(x), batch_size=self.eval_batch_size, shuffle=False)
