"""Stage-1 analyses the report reads: Table 1 with intervals, and Figure 4's lookups per item.

Both are computed once per (SID table, corpus, training days) by ``semid experiment`` and saved as JSON
(``analysis-<fingerprint>/``), so the report only reads them and an up-to-date rerun rebuilds nothing.

Table 1's interval: the average pairwise cosine similarity of items sharing a prefix of length n is a
ratio over sub-tries, and sub-tries nest inside the first-level codes, so the bootstrap resamples
first-level codes (whole top sub-tries) with replacement; the same draw serves every n, which makes the
rise from n to n+1 a paired difference.
"""
from __future__ import annotations

import numpy as np

from semid.datamodules import Corpus, corpus_impressions
from semid.embeddings import lookup_report
from semid.results.records import Stage1Analysis, Table1IntervalRow, Table1Rise, Table1WithIntervals
from semid.rqvae import SidTable
from semid.rqvae import sid_groups


def _group_sums(unit: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the sum of within-group pairwise cosines and the number of pairs."""
    sums = np.zeros((n_groups, unit.shape[1]))
    np.add.at(sums, group, unit)
    sizes = np.bincount(group, minlength=n_groups).astype(np.float64)
    return ((sums * sums).sum(1) - sizes) / 2, sizes * (sizes - 1) / 2  # ||u|| = 1


def table1_with_intervals(codes: np.ndarray, embedding: np.ndarray, num: int = 1000,
                          seed: int = 0) -> Table1WithIntervals:
    """Rows n = 1..L: similarity (with a 95% interval), sub-trie sizes, and the paired rise n -> n+1."""
    unit = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    top, _ = sid_groups(codes[:, :1])
    n_top = int(top.max()) + 1 if len(top) else 0
    counts = np.random.default_rng([seed, 2]).multinomial(n_top, np.full(n_top, 1.0 / n_top), size=num)
    rows: list[Table1IntervalRow] = []
    reps = []
    for n in range(1, codes.shape[1] + 1):
        group, sizes = sid_groups(codes[:, :n])
        s, p = _group_sums(unit, group, len(sizes))
        parent = np.zeros(len(sizes), np.int64)
        parent[group] = top  # each prefix of length n lies in one first-level sub-trie
        w = counts[:, parent].astype(np.float64)  # [num, groups]
        with np.errstate(invalid="ignore", divide="ignore"):
            rep = (w @ s) / (w @ p)
        reps.append(rep)
        p25, p50, p75 = np.percentile(sizes, [25, 50, 75])
        lo, hi = np.nanpercentile(rep, [2.5, 97.5]) if p.sum() > 0 else (np.nan, np.nan)
        rows.append({"n": n, "avg_cosine_similarity": float(s.sum() / p.sum()) if p.sum() > 0 else None,
                     "ci_low": None if np.isnan(lo) else float(lo), "ci_high": None if np.isnan(hi) else float(hi),
                     "pairs": int(p.sum()), "prefixes": int(len(sizes)), "subtrie_size_p25": float(p25),
                     "subtrie_size_median": float(p50), "subtrie_size_p75": float(p75)})
    rises: list[Table1Rise] = []
    for n in range(1, len(reps)):
        d = reps[n] - reps[n - 1]
        d = d[~np.isnan(d)]
        a, b = rows[n - 1]["avg_cosine_similarity"], rows[n]["avg_cosine_similarity"]
        rises.append({"from_n": n, "to_n": n + 1, "estimate": None if a is None or b is None else b - a,
                      "ci_low": float(np.percentile(d, 2.5)) if len(d) else None,
                      "ci_high": float(np.percentile(d, 97.5)) if len(d) else None})
    s, p = _group_sums(unit, np.zeros(len(codes), np.int64), 1)
    return {"rows": rows, "rises": rises, "random_pair_baseline": float(s[0] / p[0]) if p[0] else None,
            "random_pairs": int(p[0]), "clusters": n_top, "bootstraps": num,
            "interval": "95% percentile bootstrap over first-level codes (whole top sub-tries)"}


def stage1_analysis(corpus: Corpus, sids: SidTable, train_days: list[int], vocab_sizes: list[int],
                    num: int = 1000) -> Stage1Analysis:
    """Table 1 (on the corpus's items) and Figure 4's lookup statistics (SPM trained on training days)."""
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    rows = sids.rows_of(items.item_id)
    t1 = table1_with_intervals(sids.codes[rows], items.embedding, num=num)
    lookups = lookup_report(sids, items.item_id, corpus_impressions(corpus, items.item_id, train_days),
                            vocab_sizes=vocab_sizes)
    return {"table1": t1, "lookups": lookups}
