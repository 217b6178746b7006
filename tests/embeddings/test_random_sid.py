"""Random-SID control: same structure as the real SIDs (levels, codebook, per-level code frequencies,
tokenizer), no meaning; stable per item, new items included, and it survives a cache round trip."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from semid.embeddings import TokenCache, build_token_cache, load_representation_config
from semid.core.errors import SemidError
from semid.rqvae import SidTable

K, N = 16, 4000


def _table() -> tuple[SidTable, np.ndarray]:
    rng = np.random.default_rng(0)
    p0 = np.r_[0.4, np.full(K - 1, 0.6 / (K - 1))]  # a skewed first level, as content skew gives
    codes = np.stack([rng.choice(K, N, p=p0), rng.integers(0, K, N), rng.integers(0, 4, N)], 1).astype(np.int32)
    return SidTable(np.arange(N, dtype=np.int64) * 7 + 1, codes, K, "rq-rand"), rng.integers(1, 30, N)


def _cache(name: str, sids: SidTable, imp: np.ndarray) -> TokenCache:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_token_cache(load_representation_config(name), sids, sids.item_id, imp)


def test_per_level_code_frequencies_match_the_real_table_and_meaning_is_gone() -> None:
    sids, imp = _table()
    rand = _cache("random_bigram", sids, imp).tokenizer.random_codes(sids.item_id)
    for level in range(sids.levels):
        real = np.bincount(sids.codes[:, level], minlength=K) / N
        got = np.bincount(rand[:, level], minlength=K) / N
        assert np.abs(real - got).max() < 0.03, level  # 4,000 draws: sampling error ~0.008
    assert (rand[:, 2] < 4).all()  # codes never used at a level stay unused
    assert (rand == sids.codes).all(1).mean() < 0.05  # not the real SIDs
    # the real table's first two levels are independent here; a copy of them would agree far above chance
    assert (rand[:, 0] == sids.codes[:, 0]).mean() < 0.25


def test_same_tables_as_the_real_tokenizer_and_stable_for_new_items() -> None:
    sids, imp = _table()
    real, rand = _cache("bigram", sids, imp), _cache("random_bigram", sids, imp)
    assert [t.num_rows for t in real.tables] == [t.num_rows for t in rand.tables]
    tok = rand.tokenizer
    new_ids = np.array([10**9, 10**9 + 1], np.int64)
    both = tok.random_codes(np.r_[sids.item_id[:5], new_ids])
    assert np.array_equal(both[:5], tok.random_codes(sids.item_id[:5]))  # an item's SID never depends on the batch
    assert np.array_equal(both[5:], tok.random_codes(new_ids))


def test_spm_over_random_sids_round_trips_through_the_cache(tmp_path) -> None:  # noqa: ANN001
    sids, imp = _table()
    cache = _cache("random_spm_64", sids, imp)
    cache.save(tmp_path / "c")
    again = TokenCache.load(tmp_path / "c", sids=sids)
    assert again.fingerprint == cache.fingerprint
    rows = again.rows_of(sids.item_id[:50])
    for a, b in zip(cache.jagged, again.jagged):
        assert np.array_equal(a.take(rows).values, b.take(rows).values)
    assert np.array_equal(again.tokenizer.random_codes(sids.item_id), cache.tokenizer.random_codes(sids.item_id))


def test_a_base_that_reads_no_sids_is_refused(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "r.yaml"
    bad.write_text("kind: random_sid\nbase: hash_8k\n")
    with pytest.raises(SemidError, match="field 'base' must name an ngram, prefix_ngram or spm"):
        load_representation_config(bad)
