"""Table 1 with intervals: the same point estimates as semid.rqvae's Table 1, and intervals that cover them."""
from __future__ import annotations

import numpy as np

from semid.results.analysis import table1_with_intervals
from semid.rqvae import table1


def test_point_estimates_match_table1_and_intervals_cover_them() -> None:
    rng = np.random.default_rng(0)
    top = rng.integers(0, 8, 600)
    mid = rng.integers(0, 4, 600)
    centres = rng.normal(size=(8, 16)) * 2
    emb = centres[top] + 0.7 * rng.normal(size=(600, 16)) + 0.3 * mid[:, None]
    codes = np.stack([top, mid, rng.integers(0, 4, 600)], 1).astype(np.int32)
    ours, ref = table1_with_intervals(codes, emb, num=200), table1(codes, emb)
    for a, b in zip(ours["rows"], ref["rows"]):
        assert abs(a["avg_cosine_similarity"] - b["avg_cosine_similarity"]) < 1e-9
        assert a["ci_low"] <= a["avg_cosine_similarity"] <= a["ci_high"]
        assert (a["prefixes"], a["subtrie_size_median"]) == (b["prefixes"], b["subtrie_size_median"])
    assert abs(ours["random_pair_baseline"] - ref["random_pair_baseline"]) < 1e-9
    rise = ours["rises"][0]
    assert rise["ci_low"] > 0  # the first level is the planted cluster: sharing it makes items far more similar
