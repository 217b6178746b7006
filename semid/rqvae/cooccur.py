"""The behaviour-aware Stage 1 (``quantizer: rqvae_cooc``): what users engage with together shapes the RQ-VAE.

The loss is the paper's RQ-VAE loss plus λ x an InfoNCE term on the encoder outputs of co-engaged item pairs
(YouTube's PLUM / SID-v2 adds such a term; in-batch negatives)::

    L = ||x - x̂||² + Σ_l β||r_l - sg[e_l]||² + ||sg[r_l] - e_l||²  +  λ · InfoNCE(E(x_a), E(x_b))

A positive pair is a clicked candidate and the watch item of the same impression: the item the user engaged
with just before (in the synthetic corpus the watch item is the user's last click; in the MovieLens import
the previous rating), so "clicked close together by the same user". Pairs are read only from the days
``[min_day, max_day]`` the caller names, the experiment's training days: the evaluation day never reaches
the encoder or the codebooks.

Behaviour is a training signal, never an input: ``Rqvae.encode(x)`` reads the content embedding alone, so a
new item (no clicks yet) gets its SID at assignment and at serving exactly as from the content-only RQ-VAE.

Example::

    >>> import numpy as np
    >>> from semid.rqvae.cooccur import pair_keys
    >>> pair_keys(np.array([3, 1]), np.array([1, 2]), n_items=5).tolist()  # unordered: (1, 3) and (1, 2)
    [8, 7]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from semid.core.errors import DataError, SemidError
from semid.core.progress import progress
from semid.datamodules import Corpus, Items


@dataclass
class CoEngagedPairs:
    """Distinct unordered item pairs (item rows a < b) that users engaged with together, and how often."""

    rows: np.ndarray  # int64 [P, 2], item rows, rows[:, 0] < rows[:, 1]
    counts: np.ndarray  # int64 [P], co-engagements of each pair
    days: tuple[int, int]  # the impression days they were read from (inclusive)

    def __len__(self) -> int:
        return len(self.counts)


def pair_keys(a: np.ndarray, b: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 key per unordered pair of item rows: min * n_items + max."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    return lo * n_items + hi


def co_engaged_pairs(corpus: Corpus, items: Items, first_day: int | None, last_day: int,
                     exclude_rows: np.ndarray | None = None) -> CoEngagedPairs:
    """(watch item, clicked candidate) pairs of the impressions of days [first_day, last_day] (``first_day`` None:
    from the first day), without pairs that touch ``exclude_rows`` (the SID-health hold-out).

    >>> # pairs = co_engaged_pairs(open_corpus("corpora/small"), items, None, 8)  # days 0..8 only
    """
    days = [d for d in corpus.days() if (first_day is None or d >= first_day) and d <= last_day]
    if not days:
        raise SemidError(f"{corpus.impressions_path}: no impression days within [{first_day}, {last_day}]; fix "
                         "cooccur.first_day/last_day")
    n = len(items)
    keys: list[np.ndarray] = []
    for day in progress(days, "co-engaged pairs", unit="day"):
        t = corpus.read_day(day, columns=["watch_item_id", "item_id", "click"])
        # a null watch item (no context) pairs with nothing
        keep = t["click"].to_numpy(zero_copy_only=False).astype(bool) & \
            t["watch_item_id"].is_valid().to_numpy(zero_copy_only=False)
        w = items.index_of(t["watch_item_id"].fill_null(0).to_numpy(zero_copy_only=False)[keep].astype(np.int64))
        c = items.index_of(t["item_id"].to_numpy(zero_copy_only=False)[keep].astype(np.int64))
        if (w < 0).any() or (c < 0).any():
            raise DataError(corpus.impressions_path / f"day={day:04d}", "watch_item_id/item_id",
                            "impressions name items missing from items.parquet", "run `semid data validate`")
        same = w == c
        keys.append(pair_keys(w[~same], c[~same], n))
    uniq, counts = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    rows = np.stack([uniq // n, uniq % n], axis=1).astype(np.int64)
    if exclude_rows is not None and len(exclude_rows):
        out = np.isin(rows, exclude_rows).any(axis=1)
        rows, counts = rows[~out], counts[~out]
    if len(counts) == 0:
        raise SemidError(f"{corpus.path}: no co-engaged pairs (a clicked candidate with a watch item) in days "
                         f"{days[0]}..{days[-1]}; widen cooccur.first_day/last_day, or use quantizer: rqvae")
    return CoEngagedPairs(rows, counts.astype(np.int64), (days[0], days[-1]))


class PairSampler:
    """Draws ``size`` co-engaged pairs per step in proportion to how often they were co-engaged, from its own
    seeded stream (the content batches' stream is the plain RQ-VAE's, untouched)."""

    def __init__(self, pairs: CoEngagedPairs, size: int, seed: int) -> None:
        self.pairs, self.size, self.seed = pairs, size, seed
        self.cum = np.cumsum(pairs.counts.astype(np.float64))

    def stream(self, rank: int, worker: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, 13, rank, worker]))

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """int64 [size, 2] item rows of one step's positive pairs."""
        pick = np.searchsorted(self.cum, rng.random(self.size) * self.cum[-1], side="right")
        return self.pairs.rows[np.minimum(pick, len(self.cum) - 1)]


def info_nce(z_a: Tensor, z_b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE of positive pairs (z_a[i], z_b[i]) [P, d]: each row's partner against the other
    rows' partners (in-batch negatives), on cosine similarities / τ. Scalar.

    >>> z = torch.eye(4)
    >>> round(float(info_nce(z, z, 0.1)), 4)  # orthogonal negatives: the loss is near 0
    0.0001
    """
    a, b = F.normalize(z_a, dim=-1), F.normalize(z_b, dim=-1)
    logits = a @ b.T / temperature  # [P, P]
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
