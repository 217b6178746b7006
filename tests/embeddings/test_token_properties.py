"""Property tests: for any SIDs in range, token ids lie within their table and KJT lengths add up."""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semid.embeddings import build_kjt, build_token_cache
from semid.embeddings.hashing import HashConfig
from semid.embeddings.hybrid import HybridConfig
from semid.embeddings.ngram import NgramConfig, PrefixNgramConfig
from semid.embeddings.spm import SpmConfig
from semid.rqvae.sid_table import SidTable


@st.composite
def sid_tables(draw: st.DrawFn) -> tuple[SidTable, np.ndarray]:
    levels = draw(st.integers(1, 6))
    k = draw(st.integers(2, 12))
    n = draw(st.integers(1, 25))
    ids = np.array(sorted(draw(st.sets(st.integers(-(2**40), 2**40), min_size=n, max_size=n))), np.int64)
    codes = np.array(draw(st.lists(st.lists(st.integers(0, k - 1), min_size=levels, max_size=levels),
                                   min_size=n, max_size=n)), np.int32)
    impressions = np.array(draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)), np.int64)
    impressions[0] += 1  # at least one impressed item for SPM
    return SidTable(ids, codes, k, "rq-prop"), impressions


configs = st.one_of(
    st.builds(NgramConfig, n=st.integers(1, 4), layout=st.sampled_from(["per_group", "offset"]),
              rows_per_group=st.one_of(st.none(), st.integers(1, 300))),
    st.builds(PrefixNgramConfig, rows_per_level=st.one_of(st.none(), st.integers(1, 300)),
              layout=st.sampled_from(["per_group", "offset"])),
    st.builds(HashConfig, rows=st.integers(1, 1000), seed=st.integers(0, 5)),
    st.builds(SpmConfig, vocab_size=st.integers(2, 80), num_threads=st.just(1)),
    st.just(HybridConfig(parts=[SpmConfig(name="s", vocab_size=10), HashConfig(name="h", rows=3)])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=sid_tables(), cfg=configs, rnd=st.randoms(use_true_random=False))
def test_tokens_in_range_and_kjt_lengths_add_up(data, cfg, rnd) -> None:  # noqa: ANN001
    sids, impressions = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = build_token_cache(cfg, sids, sids.item_id, impressions)
    for t, j in zip(cache.tables, cache.jagged):
        assert j.offsets[0] == 0 and (np.diff(j.offsets) >= 0).all() and j.offsets[-1] == len(j.values)
        if len(j.values):
            assert 0 <= j.values.min() and j.values.max() < t.num_rows, t
    n = len(cache)
    b = rnd.randint(1, 6)
    cand = np.array([rnd.randint(-1, n - 1) for _ in range(b)])
    counts = [rnd.randint(0, 3) for _ in range(b)]
    hist_items = np.array([rnd.randint(-1, n - 1) for _ in range(sum(counts))], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    kjt = build_kjt(cache, {"candidate": cand}, history=(offsets, hist_items))
    assert len(kjt.keys()) == 2 * len(cache.tables)
    assert len(kjt.lengths()) == len(kjt.keys()) * b
    assert int(kjt.lengths().sum()) == len(kjt.values())
    per_item = cache.lookups_per_item()
    expect_cand = sum(int(per_item[r]) for r in cand if r >= 0)
    expect_hist = sum(int(per_item[r]) for r in hist_items if r >= 0)
    assert len(kjt.values()) == expect_cand + expect_hist
    assert kjt.weights_or_none() is None  # SUM bags; the ranker divides by the item count for "mean"
