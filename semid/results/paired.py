"""Paired, item-clustered bootstrap statistics for comparing two rankers on the same impressions.

Two runs evaluated on one day score the same impressions (``semid.rankers.predictions``, joined on the
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

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import numpy as np

from semid.rankers.metrics import MIN_SLICE_ITEMS
from semid.results.records import EstimateDict

MIN_ITEMS = MIN_SLICE_ITEMS  # fewer items than this in a slice: no interval (an AUC over 3 items says nothing)
_CELLS = 1_000_000  # replicate x impression weights held at once (~4 MB of float32; faster than 4M here)


@dataclass
class _Sorted:
    """One run's scores sorted once, split by label: where each positive falls among the negatives.

    The AUC's numerator is the sum over positives i of w_i times the weight of the negatives scored below i
    (ties count one half): with the negatives' weights cumulated in score order (``below`` [b, n_neg + 1],
    a zero first), that is ``w_i * (below[lo_i] + below[hi_i]) / 2``, where ``lo_i`` / ``hi_i`` count the
    negatives scored strictly below / at most ``s_i``. Weights are small integers, so every sum is exact:
    the same numbers, bit for bit, as a per-tie-group sum over all impressions at a fraction of its passes
    (issue 19: ~2/3 of the report's 140 s went to that per-group ``np.add.reduceat``)."""

    pos_cluster: np.ndarray  # [n_pos] cluster of each positive
    neg_slot: np.ndarray  # [n_neg + 1] 0, then 1 + cluster of each negative in ascending score order
    lo: np.ndarray  # [n_pos] negatives scored strictly below each positive
    hi: np.ndarray  # [n_pos] negatives scored at or below it
    ties: bool  # some positive ties with a negative (lo != hi somewhere)

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, cluster: np.ndarray) -> "_Sorted":
        pos = labels == 1
        order = np.argsort(scores[~pos], kind="stable")
        neg_scores, pos_scores = scores[~pos][order], scores[pos]
        lo, hi = np.searchsorted(neg_scores, pos_scores, "left"), np.searchsorted(neg_scores, pos_scores, "right")
        return cls(cluster[pos], np.r_[0, cluster[~pos][order] + 1], lo, hi, not np.array_equal(lo, hi))

    def auc(self, counts: np.ndarray) -> np.ndarray:
        """[b] AUCs under per-cluster weights ``counts`` [b, K] (ties count one half): the sum over
        (positive i, negative j) of w_i w_j [s_i > s_j] / (sum w_pos * sum w_neg); NaN where a class weighs 0."""
        b, n_neg = counts.shape[0], len(self.neg_slot) - 1
        if len(self.pos_cluster) == 0 or n_neg == 0:
            return np.full(b, np.nan)
        padded = np.concatenate([np.zeros((b, 1), counts.dtype), counts], axis=1)  # column 0: weight 0
        below = np.take(padded, self.neg_slot, axis=1)  # [b, n_neg + 1]
        # cumulated in place in float32 where every partial sum is an integer below 2^24 (exact): half the
        # memory traffic of float64, which the larger corpora get
        if counts.dtype == np.float32 and float(counts.max()) * n_neg < 2 ** 24:
            np.cumsum(below, axis=1, out=below)
        else:
            below = np.cumsum(below, axis=1, dtype=np.float64)
        at = np.take(below, self.lo, axis=1)  # [b, n_pos]
        if self.ties:
            at = 0.5 * (at.astype(np.float64) + np.take(below, self.hi, axis=1))
        w_pos = np.take(counts, self.pos_cluster, axis=1)  # [b, n_pos]
        num = np.einsum("ij,ij->i", w_pos, at, dtype=np.float64)
        den = w_pos.sum(1, dtype=np.float64) * below[:, -1].astype(np.float64)
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
    """One (seed, period) comparison: both runs' scores of the same impressions. ``reference_key`` /
    ``candidate_key`` name the scores (e.g. run, day, slice, task) for a ``ReplicateCache``: runs with a key
    are bootstrapped once per item draw however many comparisons they enter."""

    seed: int
    period: int
    reference: np.ndarray  # scores [n]
    candidate: np.ndarray  # scores [n]
    labels: np.ndarray  # [n] 0/1
    items: np.ndarray  # cluster of each impression [n]
    reference_key: Hashable | None = None
    candidate_key: Hashable | None = None


@dataclass
class ReplicateCache:
    """Bootstrap replicates already computed, for a report that compares many pairs of runs.

    Every comparison on the same slice draws the same items (the draws depend only on the bootstrap seed,
    the replicate count and each period's item and impression counts), so a run's replicate AUCs on a slice
    are the same in every comparison it enters: the report's hash-8K entered ~15 of them, each recomputing
    its AUCs. ``aucs``: (run key, draw key, period) -> (replicate AUCs [num], point AUC); ``rng_after``: draw
    key -> the generator's state after the item draws (where the seed resampling continues), so a comparison
    whose runs are all cached draws nothing and gets the same numbers as one computed afresh."""

    aucs: dict[tuple[Hashable, ...], tuple[np.ndarray, float]] = field(default_factory=dict)
    rng_after: dict[tuple[Hashable, ...], dict[str, Any]] = field(default_factory=dict)


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


def _pooled(runs: list[PairedRun], stat: Callable[[np.ndarray, np.ndarray], np.ndarray], num: int, seed: int,
            empty: str, cache: ReplicateCache | None = None, need_reference: bool = True) -> Estimate:
    """``stat(reference AUCs, candidate AUCs) -> statistic``, elementwise over replicates, pooled over (seed,
    period) as the module docstring says."""
    seeds = sorted({r.seed for r in runs})
    periods = sorted({r.period for r in runs})
    firsts = [next(r for r in runs if r.period == p) for p in periods]
    n_items = sum(len(np.unique(r.items)) for r in firsts)
    n_imp = sum(len(r.labels) for r in firsts)
    why = _undefined(runs) if runs else empty
    if why:
        return Estimate(None, None, None, len(seeds), len(periods), n_items, n_imp, why)
    cache = cache if cache is not None else ReplicateCache()
    clusters = [np.unique(first.items, return_inverse=True) for first in firsts]
    draw_key = (seed, num, tuple((p, len(ids), len(first.labels)) for p, first, (ids, _) in
                                 zip(periods, firsts, clusters)))
    roles = ("reference", "candidate") if need_reference else ("candidate",)

    def cache_key(r: PairedRun, role: str) -> tuple[Hashable, ...] | None:
        name = getattr(r, f"{role}_key")
        return None if name is None else (name, draw_key, r.period)

    groups = [{r.seed: r for r in runs if r.period == p} for p in periods]
    # (id(run), role) -> its cache key; None for scores without a name (computed here, never cached)
    keys = {(id(r), role): cache_key(r, role) for g in groups for r in g.values() for role in roles}
    todo = {k for k, cache_key in keys.items() if cache_key not in cache.aucs}
    rng = np.random.default_rng([seed, 7919])
    if todo or draw_key not in cache.rng_after:
        fresh = _replicates(groups, firsts, clusters, todo, roles, num, rng)
        cache.aucs.update({keys[k]: v for k, v in fresh.items() if keys[k] is not None})
        cache.rng_after[draw_key] = rng.bit_generator.state
    else:  # every run is cached: continue the generator where its item draws left it
        fresh = {}
        rng.bit_generator.state = cache.rng_after[draw_key]

    def aucs(r: PairedRun, role: str) -> tuple[np.ndarray, float]:
        return fresh.get((id(r), role)) or cache.aucs[keys[(id(r), role)]]  # type: ignore[index]

    draws = np.zeros((len(periods), len(seeds), num))
    point = []
    for pi, group in enumerate(groups):
        for s, r in group.items():
            (cand, cand_point), (ref, ref_point) = aucs(r, "candidate"), aucs(r, roles[0])
            draws[pi, seeds.index(s)] = stat(ref, cand)
            point.append(float(stat(np.array([ref_point]), np.array([cand_point]))[0]))
    if len(seeds) > 1:  # seed variance: each replicate averages a resample (with replacement) of the seeds
        pick = rng.integers(0, len(seeds), size=(num, len(seeds)))
        per_rep = np.take_along_axis(draws, pick.T[None, :, :], axis=1).mean(1)  # [periods, num]
    else:
        per_rep = draws[:, 0, :]
    reps = per_rep.mean(0)
    reps = reps[~np.isnan(reps)]
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return Estimate(float(np.mean(point)), float(lo), float(hi), len(seeds), len(periods), n_items, n_imp)


def _replicates(groups: list[dict[int, PairedRun]], firsts: list[PairedRun],
                clusters: list[tuple[np.ndarray, np.ndarray]], todo: set[tuple[int, str]], roles: tuple[str, ...],
                num: int, rng: np.random.Generator) -> dict[tuple[int, str], tuple[np.ndarray, float]]:
    """(id(run), role) -> (replicate AUCs [num], point AUC) for each pair in ``todo``, under one item draw per
    period and replicate shared by every seed of the period. The draws consume ``rng`` whatever ``todo`` is."""
    out: dict[tuple[int, str], tuple[np.ndarray, float]] = {}
    for group, first, (ids, cluster) in zip(groups, firsts, clusters):
        if any(not np.array_equal(r.items, first.items) for r in group.values()):
            raise ValueError(f"day {first.period}: the seeds' runs did not score the same impressions")
        prepared = {(id(r), role): _Sorted.of(getattr(r, role), r.labels, cluster)
                    for r in group.values() for role in roles if (id(r), role) in todo}
        reps = {k: np.zeros(num) for k in prepared}
        chunk = max(1, _CELLS // max(len(first.labels), 1))
        for start in range(0, num, chunk):  # one item draw per replicate, shared by every seed of the period
            counts = cluster_counts(len(ids), min(chunk, num - start), rng)
            for k, sorted_ in prepared.items():
                reps[k][start:start + len(counts)] = sorted_.auc(counts)
        unit = np.ones((1, len(ids)), np.float32)
        out.update({k: (reps[k], float(sorted_.auc(unit)[0])) for k, sorted_ in prepared.items()})
    return out


def paired_difference(runs: list[PairedRun], *, relative: bool = True, num: int = 1000,
                      seed: int = 0, cache: ReplicateCache | None = None) -> Estimate:
    """Candidate minus reference AUC (in % of the reference's AUC when ``relative``), pooled over the
    (seed, period) pairs in ``runs``; 95% percentile interval."""
    def stat(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return 100.0 * (cand - ref) / ref if relative else cand - ref

    return _pooled(runs, stat, num, seed, "no runs to compare", cache)


def pooled_auc(runs: list[PairedRun], *, num: int = 1000, seed: int = 0,
               cache: ReplicateCache | None = None) -> Estimate:
    """One arm's AUC (the runs' ``candidate`` scores), pooled and item-clustered the same way."""
    return _pooled(runs, lambda ref, cand: cand, num, seed, "no runs", cache, need_reference=False)


def impression_bootstrap(scores: np.ndarray, labels: np.ndarray, num: int = 1000,
                         seed: int = 0) -> tuple[float, float]:
    """95% interval of an AUC resampling *impressions* (each its own cluster), as the per-run intervals in
    results.json do: narrower than the item-clustered one when items carry correlated impressions."""
    s = _Sorted.of(scores, labels, np.arange(len(scores)))
    reps = s.auc(cluster_counts(len(scores), num, np.random.default_rng([seed, 7919])))
    lo, hi = np.percentile(reps[~np.isnan(reps)], [2.5, 97.5])
    return float(lo), float(hi)
