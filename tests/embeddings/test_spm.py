"""SPM-SID on tiny skewed corpora: frequent pairs merge, rare codes stay unigrams, small vocabs use <unk>."""
from __future__ import annotations

import numpy as np
import pytest

from semid.embeddings import TokenizerWarning, build_token_cache
from semid.embeddings.spm import SpmConfig, sid_strings
from semid.core.errors import SemidError
from semid.rqvae.sid_table import SidTable

L, K = 4, 8


def _pieces(cache, i: int) -> list[str]:
    j = cache.jagged[0]
    sp = cache.tokenizer.processor
    return [sp.id_to_piece(int(v)) for v in j.values[j.offsets[i]:j.offsets[i + 1]]]


def _sym(level: int, code: int) -> str:
    return sid_strings(np.array([[0] * level + [code]]), K)[0][-1]


def _skewed() -> tuple[SidTable, np.ndarray]:
    """Head items share the prefix (3, 5) and have many impressions; tail items are random, 1 impression."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, K, (60, L)).astype(np.int32)
    codes[:20, 0], codes[:20, 1] = 3, 5
    codes[20:, 0] = rng.choice([0, 1, 2, 4, 6, 7], 40)  # the tail never starts with 3
    impressions = np.r_[np.full(20, 1000), np.ones(40)].astype(np.int64)
    return SidTable(np.arange(60, dtype=np.int64), codes, K, "rq-spm"), impressions


def test_frequent_pair_merges_rare_codes_stay_unigrams() -> None:
    sids, imp = _skewed()
    cache = build_token_cache(SpmConfig(name="spm", vocab_size=L * K + 1 + 6), sids, sids.item_id, imp)
    assert cache.tables[0].num_rows == L * K + 1 + 6
    head_pieces = _pieces(cache, 0)
    assert head_pieces[0].startswith(_sym(0, 3) + _sym(1, 5))  # the frequent pair is one piece
    per_item = cache.lookups_per_item()
    assert per_item[:20].max() < L and per_item[:20].mean() < 2.5
    # tail items: mostly single-symbol pieces; every piece is a run of consecutive levels
    tail_single = np.mean([len(p) == 1 for i in range(20, 60) for p in _pieces(cache, i)])
    assert tail_single > 0.8
    assert per_item[20:].mean() > per_item[:20].mean() + 1.5
    assert (cache.jagged[0].values != 0).all()  # everything has a row: no <unk>


def test_impression_weighting_decides_what_merges() -> None:
    sids, imp = _skewed()
    flipped = np.where(imp > 1, 1, 1000)  # now the random tail is popular, the (3,5) items are not
    cache = build_token_cache(SpmConfig(name="spm", vocab_size=L * K + 1 + 6), sids, sids.item_id, flipped)
    assert _pieces(cache, 0)[0] == _sym(0, 3)  # (3, 5) no longer merges
    assert cache.lookups_per_item()[:20].mean() > 2


def test_small_vocab_maps_rare_symbols_to_unk_with_a_warning() -> None:
    sids, imp = _skewed()
    with pytest.warns(TokenizerWarning, match=r"map to the <unk> row"):
        cache = build_token_cache(SpmConfig(name="spm", vocab_size=12), sids, sids.item_id, imp)
    assert cache.tables[0].num_rows == 12
    values = cache.jagged[0].values
    assert values.min() >= 0 and values.max() < 12
    sp = cache.tokenizer.processor
    assert sp.id_to_piece(0) == "<unk>"
    assert sp.piece_to_id(_sym(0, 3)) != 0 and sp.piece_to_id(_sym(1, 5)) != 0  # the popular symbols keep rows
    assert (values == 0).mean() > 0.2  # rare symbols share the <unk> row
    assert cache.tokenizer.meta()["dropped_symbols"] > 0


def test_unseen_codes_of_new_items_get_unigram_rows_when_the_vocab_has_room() -> None:
    sids, imp = _skewed()
    imp = imp.copy()
    imp[sids.codes[:, 3] == 7] = 0  # level-3 code 7 is never impressed
    cache = build_token_cache(SpmConfig(name="spm", vocab_size=64), sids, sids.item_id, imp)
    new = SidTable(np.array([1000]), np.array([[1, 1, 1, 7]], np.int32), K, "rq-spm")
    grown = cache.extend(new.item_id, new)
    pieces = _pieces(grown, grown.rows_of(np.array([1000]))[0])
    assert pieces[-1] == _sym(3, 7)  # its own unigram row, not <unk>


def test_vocab_larger_than_the_corpus_supports_is_a_cap() -> None:
    sids, imp = _skewed()
    with pytest.warns(TokenizerWarning, match="support only"):
        cache = build_token_cache(SpmConfig(name="spm", vocab_size=5000), sids, sids.item_id, imp)
    rows = cache.tables[0].num_rows
    assert L * K < rows < 5000
    assert cache.jagged[0].values.max() < rows


def test_spm_needs_impressions() -> None:
    sids, _ = _skewed()
    with pytest.raises(SemidError, match="impression counts"):
        build_token_cache(SpmConfig(name="spm", vocab_size=40), sids, sids.item_id, None)
    with pytest.raises(SemidError, match="every impression count is 0"):
        build_token_cache(SpmConfig(name="spm", vocab_size=40), sids, sids.item_id, np.zeros(60, np.int64))
    with pytest.raises(SemidError, match="character_coverage"):
        SpmConfig(vocab_size=40, character_coverage=0.5)
