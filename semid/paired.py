"""Paired, item-clustered bootstrap statistics for comparing two rankers on the same impressions.

Two runs evaluated on one day score the same impressions (``rankers.predictions``, joined on the
impression's row). A difference between them is estimated on those impressions and its interval comes
from resampling **items** (clusters): every impression of a drawn item enters with the item's draw
count, because an item's impressions share its hidden quality and are not independent (on CTR/1D,
~1,000 new items carry all impressions; resampling impressions would pretend there are ~20,000
independent observations). Each replicate applies the same item draw to both runs, so the interval is
that of the *paired* difference, not of two independent intervals combined.

Several seeds and evaluation periods are pooled with a hierarchical bootstrap: within each period the
item draw is shared by every seed (their impressions are the same), seeds are resampled with
replacement when two or more ran (seed variance), and a replicate's difference is the mean over periods
of the mean over its drawn seeds. The point estimate is the plain mean of the per-(seed, period)
differences. Percentile intervals; never a t-interval from a handful of values.

Hand-written: torchmetrics' BootStrapper resamples observations, not clusters, and keeps one metric copy
per resample; the weighted rank statistic below sorts once per run and evaluates every resample as a
vector of weights (checked equal to torchmetrics' BinaryAUROC on unit weights in the tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rankers.metrics import MIN_SLICE_ITEMS
from semid.core.records import EstimateDict

MIN_ITEMS = MIN_SLICE_ITEMS  # fewer items than this in a slice: no interval (an AUC over 3 items says nothing)
_CELLS = 4_000_000  # replicate x impression weights held at once (~32 MB of float64)


@dataclass
class _Sorted:
    """One run's scores sorted once: tie-group starts, labels and each impression's cluster in that order."""

    starts: np.ndarray
    labels: np.ndarray  # float32 0/1, sorted by score
    cluster: np.ndarray  # cluster index (into the draw counts' columns), sorted by score

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, cluster: np.ndarray) -> "_Sorted":
        order = np.argsort(scores, kind="stable")
        s = scores[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, np.int64)
        return cls(starts, labels[order].astype(np.float32), cluster[order])

    def auc(self, counts: np.ndarray) -> np.ndarray:
        """[b] AUCs under per-cluster weights ``counts`` [b, K] (ties count one half): the sum over
        (positive i, negative j) of w_i w_j [s_i > s_j] / (sum w_pos * sum w_neg); NaN where a class weighs 0."""
        if len(self.labels) == 0:
            return np.full(counts.shape[0], np.nan)
        # float32 weights (draw counts are small integers, exact in float32) halve the memory traffic of the
        # O(replicates x impressions) passes below, which are the report's whole cost; sums are float64
        w = counts[:, self.cluster]
        if len(self.starts) == len(self.labels):  # no tied scores (the usual case): no per-group sums needed
            pos, neg = w * self.labels, w * (1 - self.labels)
        else:
            pos = np.add.reduceat(w * self.labels, self.starts, axis=1)  # [b, tie groups], ascending score
            neg = np.add.reduceat(w, self.starts, axis=1) - pos
        below = np.cumsum(neg, 1, dtype=np.float64) - neg  # negatives strictly below each group
        num = np.einsum("ij,ij->i", pos, below + 0.5 * neg, dtype=np.float64)
        den = pos.sum(1, dtype=np.float64) * neg.sum(1, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``scores`` [n] against binary ``labels`` [n] under each row of impression ``weights`` [b, n]."""
    return _Sorted.of(scores, labels, np.arange(len(scores))).auc(weights)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(weighted_auc(scores, labels, np.ones((1, len(scores)), np.float32))[0])


def cluster_counts(n_clusters: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """[num, K] float32 draw counts: each replicate draws K clusters with replacement."""
    draws = rng.integers(0, n_clusters, size=(num, n_clusters)) + (np.arange(num) * n_clusters)[:, None]
    return np.bincount(draws.ravel(), minlength=num * n_clusters).reshape(num, n_clusters).astype(np.float32)


@dataclass
class PairedRun:
    """One (seed, period) comparison: both runs' scores of the same impressions."""

    seed: int
    period: int
    reference: np.ndarray  # scores [n]
    candidate: np.ndarray  # scores [n]
    labels: np.ndarray  # [n] 0/1
    items: np.ndarray  # cluster of each impression [n]


@dataclass
class Estimate:
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int
    n_periods: int
    items: int  # distinct items behind the estimate (summed over periods)
    impressions: int
    undefined: str | None = None

    def as_dict(self) -> EstimateDict:
        return dict(self.__dict__)


def _undefined(runs: list[PairedRun]) -> str | None:
    for r in runs:
        n_items = len(np.unique(r.items))
        if len(r.labels) == 0:
            return f"no impressions in this slice on day {r.period}"
        if r.labels.min() == r.labels.max():
            return f"{'no positives' if r.labels.max() == 0 else 'no negatives'} among {len(r.labels)} impressions " \
                   f"on day {r.period}"
        if n_items < MIN_ITEMS:
            return f"{n_items} items on day {r.period}, need >= {MIN_ITEMS} for an interval"
    return None


def _pooled(runs: list[PairedRun], stat: Callable[[list[_Sorted], np.ndarray], np.ndarray], num: int, seed: int,
            empty: str) -> Estimate:
    """``stat(both runs' sorted scores, cluster counts [b, K]) -> [b]`` pooled over (seed, period) as the
    module docstring says."""
    seeds = sorted({r.seed for r in runs})
    periods = sorted({r.period for r in runs})
    firsts = [next(r for r in runs if r.period == p) for p in periods]
    n_items = sum(len(np.unique(r.items)) for r in firsts)
    n_imp = sum(len(r.labels) for r in firsts)
    why = _undefined(runs) if runs else empty
    if why:
        return Estimate(None, None, None, len(seeds), len(periods), n_items, n_imp, why)
    rng = np.random.default_rng([seed, 7919])
    draws = np.zeros((len(periods), len(seeds), num))
    point = []
    for pi, (p, first) in enumerate(zip(periods, firsts)):
        group = {r.seed: r for r in runs if r.period == p}
        if any(not np.array_equal(r.items, first.items) for r in group.values()):
            raise ValueError(f"day {p}: the seeds' runs did not score the same impressions")
        ids, cluster = np.unique(first.items, return_inverse=True)
        prepared = {s: [_Sorted.of(x, r.labels, cluster) for x in (r.reference, r.candidate)]
                    for s, r in group.items()}
        chunk = max(1, _CELLS // max(len(first.labels), 1))
        for start in range(0, num, chunk):  # one item draw per replicate, shared by every seed of the period
            counts = cluster_counts(len(ids), min(chunk, num - start), rng)
            for si, s in enumerate(seeds):
                draws[pi, si, start:start + len(counts)] = stat(prepared[s], counts)
        point += [float(stat(prepared[s], np.ones((1, len(ids)), np.float32))[0]) for s in group]
    if len(seeds) > 1:  # seed variance: each replicate averages a resample (with replacement) of the seeds
        pick = rng.integers(0, len(seeds), size=(num, len(seeds)))
        per_rep = np.take_along_axis(draws, pick.T[None, :, :], axis=1).mean(1)  # [periods, num]
    else:
        per_rep = draws[:, 0, :]
    reps = per_rep.mean(0)
    reps = reps[~np.isnan(reps)]
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return Estimate(float(np.mean(point)), float(lo), float(hi), len(seeds), len(periods), n_items, n_imp)


def paired_difference(runs: list[PairedRun], *, relative: bool = True, num: int = 1000,
                      seed: int = 0) -> Estimate:
    """Candidate minus reference AUC (in % of the reference's AUC when ``relative``), pooled over the
    (seed, period) pairs in ``runs``; 95% percentile interval."""
    def stat(pair: list[_Sorted], counts: np.ndarray) -> np.ndarray:
        ref, cand = pair[0].auc(counts), pair[1].auc(counts)
        return 100.0 * (cand - ref) / ref if relative else cand - ref

    return _pooled(runs, stat, num, seed, "no runs to compare")


def pooled_auc(runs: list[PairedRun], *, num: int = 1000, seed: int = 0) -> Estimate:
    """One arm's AUC (the runs' ``candidate`` scores), pooled and item-clustered the same way."""
    return _pooled(runs, lambda pair, counts: pair[1].auc(counts), num, seed, "no runs")


def impression_bootstrap(scores: np.ndarray, labels: np.ndarray, num: int = 1000,
                         seed: int = 0) -> tuple[float, float]:
    """95% interval of an AUC resampling *impressions* (each its own cluster), as the per-run intervals in
    results.json do: narrower than the item-clustered one when items carry correlated impressions."""
    s = _Sorted.of(scores, labels, np.arange(len(scores)))
    reps = s.auc(cluster_counts(len(scores), num, np.random.default_rng([seed, 7919])))
    lo, hi = np.percentile(reps[~np.isnan(reps)], [2.5, 97.5])
    return float(lo), float(hi)
