"""Exact token ids of the hashing, N-gram and prefix-N-gram tokenizers on hand-made SIDs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semid.embeddings import TableSpec, build_token_cache, load_representation_config
from semid.embeddings.hashing import HashConfig
from semid.embeddings.ngram import NgramConfig, PrefixNgramConfig, group_index
from semid.embeddings.registry import parse_representation
from semid.core.config import CONF_DIR
from semid.core.errors import SemidError
from semid.rqvae.sid_table import SidTable

K = 4
CODES = np.array([[1, 2, 3, 0],
                  [0, 0, 3, 1],
                  [3, 3, 3, 3]], np.int32)
SIDS = SidTable(np.array([10, 20, 30]), CODES, K, "rq-test")


def _values(cache, table: str) -> list[list[int]]:
    j = cache.jagged[cache.table_index(table)]
    return [j.values[j.offsets[i]:j.offsets[i + 1]].tolist() for i in range(len(cache))]


def test_bigram_row_is_c2i_times_k_plus_c2i1() -> None:
    pairs = np.array([[3, 5], [0, 7], [7, 0], [7, 7]])
    assert group_index(pairs, 8).tolist() == [3 * 8 + 5, 7, 56, 63]
    assert group_index(np.array([[1, 2, 3]]), 10).tolist() == [123]  # general n: base-K digits


def test_unigram_one_table_per_level() -> None:
    cache = build_token_cache(NgramConfig(name="uni", n=1), SIDS, SIDS.item_id, None)
    assert cache.tables == [TableSpec(f"uni_{g}", K) for g in range(4)]
    for g in range(4):
        assert _values(cache, f"uni_{g}") == [[c] for c in CODES[:, g]]
    assert cache.lookups_per_item().tolist() == [4, 4, 4]


def test_unigram_offset_layout_shifts_each_level_by_k() -> None:
    cache = build_token_cache(NgramConfig(name="uni", n=1, layout="offset"), SIDS, SIDS.item_id, None)
    assert cache.tables == [TableSpec("uni", 4 * K)]
    assert _values(cache, "uni") == [[1, 6, 11, 12], [0, 4, 11, 13], [3, 7, 11, 15]]


def test_bigram_tables_and_rows() -> None:
    cache = build_token_cache(NgramConfig(name="bi", n=2), SIDS, SIDS.item_id, None)
    assert cache.tables == [TableSpec("bi_0", K * K), TableSpec("bi_1", K * K)]
    assert _values(cache, "bi_0") == [[1 * 4 + 2], [0], [15]]
    assert _values(cache, "bi_1") == [[3 * 4 + 0], [3 * 4 + 1], [15]]
    off = build_token_cache(NgramConfig(name="bi", n=2, layout="offset"), SIDS, SIDS.item_id, None)
    assert off.tables == [TableSpec("bi", 2 * K * K)]
    assert _values(off, "bi") == [[6, 16 + 12], [0, 16 + 13], [15, 31]]


def test_odd_length_leaves_a_last_unigram_group() -> None:
    sids = SidTable(SIDS.item_id, CODES[:, :3].copy(), K, "rq-test")
    cache = build_token_cache(NgramConfig(name="bi", n=2), sids, sids.item_id, None)
    assert cache.tables == [TableSpec("bi_0", 16), TableSpec("bi_1", 4)]
    assert _values(cache, "bi_1") == [[3], [3], [3]]
    tri = build_token_cache(NgramConfig(name="tri", n=3), SIDS, SIDS.item_id, None)
    assert tri.tables == [TableSpec("tri_0", 64), TableSpec("tri_1", 4)]
    assert _values(tri, "tri_0") == [[1 * 16 + 2 * 4 + 3], [3], [63]]


def test_ngram_over_budget_is_hashed_into_it() -> None:
    cache = build_token_cache(NgramConfig(name="bi", n=2, rows_per_group=10), SIDS, SIDS.item_id, None)
    assert [t.num_rows for t in cache.tables] == [10, 10]
    assert all(0 <= v < 10 for t in cache.tables for row in _values(cache, t.name) for v in row)


def test_prefix_ids_exact_within_budget() -> None:
    cache = build_token_cache(PrefixNgramConfig(name="p", rows_per_level=None), SIDS, SIDS.item_id, None)
    assert cache.tables == [TableSpec("p_1", 4), TableSpec("p_2", 16), TableSpec("p_3", 64), TableSpec("p_4", 256)]
    assert _values(cache, "p_1") == [[1], [0], [3]]
    assert _values(cache, "p_2") == [[6], [0], [15]]
    assert _values(cache, "p_3") == [[27], [3], [63]]
    assert _values(cache, "p_4") == [[108], [13], [255]]


def test_prefix_hashed_beyond_budget_keeps_shared_prefixes_together() -> None:
    codes = np.array([[1, 2, 0], [1, 2, 3], [2, 1, 0], [1, 3, 0]], np.int32)
    sids = SidTable(np.arange(4), codes, K, "rq-test")
    cache = build_token_cache(PrefixNgramConfig(name="p", rows_per_level=8), sids, sids.item_id, None)
    assert [t.num_rows for t in cache.tables] == [4, 8, 8]  # 4 exact; 16 and 64 hashed into 8
    p2 = [r[0] for r in _values(cache, "p_2")]
    assert p2[0] == p2[1]  # same 2-prefix, same row
    assert all(0 <= v < 8 for v in p2)
    again = build_token_cache(PrefixNgramConfig(name="p", rows_per_level=8), sids, sids.item_id, None)
    assert _values(again, "p_3") == _values(cache, "p_3")  # deterministic
    lengths = build_token_cache(PrefixNgramConfig(name="p", min_length=2, max_length=2), sids, sids.item_id, None)
    assert [t.name for t in lengths.tables] == ["p_2"]


def test_hash_is_seeded_in_range_and_spread() -> None:
    ids = np.arange(100_000, dtype=np.int64) * 7919
    a = build_token_cache(HashConfig(name="h", rows=16, seed=0), None, ids, None)
    b = build_token_cache(HashConfig(name="h", rows=16, seed=1), None, ids, None)
    va, vb = a.jagged[0].values, b.jagged[0].values
    assert va.min() >= 0 and va.max() < 16 and a.lookups_per_item().tolist() == [1] * len(ids)
    counts = np.bincount(va, minlength=16)
    assert np.abs(counts / counts.mean() - 1).max() < 0.05
    assert (va != vb).mean() > 0.8  # another seed, another hash function
    again = build_token_cache(HashConfig(name="h", rows=16, seed=0), None, ids, None)
    assert (again.jagged[0].values == va).all()


def test_every_preset_loads_and_names_its_kind() -> None:
    names = sorted(p.stem for p in (CONF_DIR / "embeddings").glob("*.yaml"))
    for required in ("hash_8k", "hash_large", "unigram", "bigram", "prefix_ngram", "hybrid_spm_hash", "dense"):
        assert required in names
    assert sum(n.startswith("spm_") for n in names) >= 3
    for n in names:
        cfg = load_representation_config(n)
        assert cfg.name == n
    assert load_representation_config("bigram").n == 2
    assert [p.kind for p in load_representation_config("hybrid_spm_hash").parts] == ["spm", "hash"]


def test_presets_have_the_documented_row_counts() -> None:
    l, k = SIDS.levels, SIDS.codebook_size
    uni = build_token_cache("unigram", SIDS, SIDS.item_id, None)
    bi = build_token_cache("bigram", SIDS, SIDS.item_id, None)
    assert sum(t.num_rows for t in uni.tables) == l * k
    assert sum(t.num_rows for t in bi.tables) == (l // 2) * k * k
    assert build_token_cache("hash_8k", None, SIDS.item_id, None).tables == [TableSpec("hash_8k", 8192)]


def test_bad_configs_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("kind: ngram\nn: 2\nlayuot: offset\n")
    with pytest.raises(SemidError, match=r"typo.yaml: unknown key\(s\) layuot"):
        load_representation_config(bad)
    bad.write_text("kind: trigram\n")
    with pytest.raises(SemidError, match="field 'kind' is 'trigram'"):
        load_representation_config(bad)
    bad.write_text("kind: ngram\nlayout: diagonal\n")
    with pytest.raises(SemidError, match="typo.yaml: layout must be one of"):
        load_representation_config(bad)
    with pytest.raises(SemidError, match="distinct names"):
        parse_representation({"kind": "hybrid", "parts": [{"kind": "hash"}, {"kind": "hash"}]}, "x")
    with pytest.raises(SemidError, match="no preset 'nope'"):
        load_representation_config("nope")
    with pytest.raises(SemidError, match="pass a SID table"):
        build_token_cache("unigram", None, SIDS.item_id, None)
    with pytest.raises(SemidError, match="have no SID"):
        build_token_cache("unigram", SIDS, np.array([10, 11]), None)
