"""Paired, item-clustered bootstrap: equal to hand computations, wider than an impression bootstrap when an
item's impressions are correlated, and undefined (with the reason) on slices too small to say anything."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from semid.results.paired import (MIN_ITEMS, PairedRun, ReplicateCache, auc, cluster_counts, impression_bootstrap,
                          paired_difference, pooled_auc, weighted_auc)


def _brute_auc(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    num = den = 0.0
    for i, j in itertools.product(range(len(s)), repeat=2):
        if y[i] == 1 and y[j] == 0:
            den += w[i] * w[j]
            num += w[i] * w[j] * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
    return num / den


def test_weighted_auc_equals_the_pair_count_by_hand() -> None:
    s = np.array([0.1, 0.4, 0.4, 0.8, 0.3, 0.9])  # a tie at 0.4 between a positive and a negative
    y = np.array([0, 1, 0, 1, 0, 1])
    w = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 1, 3, 1, 1], [0, 1, 1, 0, 2, 1]], np.float64)
    got = weighted_auc(s, y, w)
    assert np.allclose(got, [_brute_auc(s, y, row) for row in w])
    assert abs(auc(s, y) - float(binary_auroc(torch.tensor(s), torch.tensor(y)))) < 1e-7


def test_paired_difference_is_the_difference_on_shared_resamples() -> None:
    """With one seed and one period, a replicate's difference is computed on the *same* item draw for both
    runs: replaying the draws by hand gives the same interval."""
    rng = np.random.default_rng(3)
    items = np.repeat(np.arange(30), 4)
    y = rng.integers(0, 2, len(items))
    ref, cand = rng.random(len(items)), rng.random(len(items)) + 0.3 * y
    est = paired_difference([PairedRun(0, 7, ref, cand, y, items)], relative=False, num=200, seed=5)
    assert abs(est.estimate - (auc(cand, y) - auc(ref, y))) < 1e-12
    hand_rng = np.random.default_rng([5, 7919])
    counts = cluster_counts(30, 200, hand_rng)  # the same draws, in the same order
    w = counts[:, items]
    reps = weighted_auc(cand, y, w) - weighted_auc(ref, y, w)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert abs(est.ci_low - lo) < 1e-12 and abs(est.ci_high - hi) < 1e-12
    assert (est.items, est.impressions, est.n_seeds, est.n_periods) == (30, 120, 1, 1)


def test_item_clusters_widen_the_interval_when_items_carry_the_signal() -> None:
    rng = np.random.default_rng(0)
    n_items, per_item = 60, 50
    items = np.repeat(np.arange(n_items), per_item)
    quality = rng.normal(size=n_items)
    y = (rng.random(len(items)) < 1 / (1 + np.exp(-2 * quality[items]))).astype(int)
    score = quality[items] + 0.3 * rng.normal(size=len(items))  # a model that learned the items
    clustered = pooled_auc([PairedRun(0, 1, score, score, y, items)], num=400)
    lo, hi = impression_bootstrap(score, y, num=400)
    assert (clustered.ci_high - clustered.ci_low) > 2 * (hi - lo)


def test_seeds_add_their_variance_and_small_slices_are_undefined() -> None:
    rng = np.random.default_rng(1)
    items = np.repeat(np.arange(40), 10)
    y = rng.integers(0, 2, len(items))
    ref = rng.random(len(items))
    runs = [PairedRun(s, 3, ref, ref + (0.4 + 0.3 * s) * y * rng.random(len(items)), y, items) for s in range(3)]
    one = paired_difference(runs[:1], num=300)
    three = paired_difference(runs, num=300)
    assert three.n_seeds == 3 and abs(three.estimate - np.mean([paired_difference([r], num=10).estimate
                                                                 for r in runs])) < 1e-9
    assert (three.ci_high - three.ci_low) > (one.ci_high - one.ci_low)  # the seeds disagree: a wider interval
    few = np.repeat(np.arange(MIN_ITEMS - 1), 5)
    small = paired_difference([PairedRun(0, 3, rng.random(len(few)), rng.random(len(few)), few % 2, few)])
    assert small.estimate is None and f"need >= {MIN_ITEMS}" in small.undefined
    none = paired_difference([PairedRun(0, 3, ref, ref, np.zeros(len(items), int), items)])
    assert none.undefined.startswith("no positives among 400 impressions")


def test_float32_weights_with_ties_equal_the_pair_count_by_hand() -> None:
    """The report's path: float32 draw counts, cumulated in float32 (exact for integer weights), with tied
    scores between positives and negatives."""
    rng = np.random.default_rng(4)
    s = np.round(rng.random(40), 1)  # many ties
    y = rng.integers(0, 2, 40)
    w = cluster_counts(40, 5, rng)
    assert w.dtype == np.float32
    got = weighted_auc(s, y, w)
    assert np.allclose(got, [_brute_auc(s, y, row.astype(np.float64)) for row in w], rtol=0, atol=1e-12)


def test_a_replicate_cache_gives_the_same_numbers_without_recomputing() -> None:
    """A report compares many pairs of runs on one slice: each run's replicate AUCs are computed once, and a
    comparison whose runs are all cached (seed resampling included) equals one computed afresh."""
    rng = np.random.default_rng(2)
    items = np.repeat(np.arange(50), 6)
    y = rng.integers(0, 2, len(items))
    scores = {name: {s: rng.random(len(items)) + shift * y for s in range(3)}
              for name, shift in (("hash", 0.1), ("spm", 0.3), ("dense", 0.2))}

    def runs(ref: str, cand: str, keyed: bool) -> list[PairedRun]:
        return [PairedRun(s, 9, scores[ref][s], scores[cand][s], y, items,
                          (ref, s) if keyed else None, (cand, s) if keyed else None) for s in range(3)]

    cache = ReplicateCache()
    fresh = [paired_difference(runs("hash", c, False), num=120) for c in ("spm", "dense")]
    auc_fresh = pooled_auc(runs("spm", "spm", False), num=120)
    assert pooled_auc(runs("spm", "spm", True), num=120, cache=cache) == auc_fresh
    assert len(cache.aucs) == 3  # spm's three seeds
    assert paired_difference(runs("hash", "spm", True), num=120, cache=cache) == fresh[0]
    assert len(cache.aucs) == 6  # hash's seeds added; spm's reused
    assert paired_difference(runs("hash", "dense", True), num=120, cache=cache) == fresh[1]
    cache.aucs = {k: (np.full_like(v[0], np.nan), v[1]) if k[0] == ("spm", 0) else v for k, v in cache.aucs.items()}
    poisoned = paired_difference(runs("hash", "spm", True), num=120, cache=cache)
    assert poisoned != fresh[0]  # the cached replicates are what it used: nothing was recomputed
