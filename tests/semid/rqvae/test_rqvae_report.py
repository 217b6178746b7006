"""Table 1 and `compare` on hand-built items and SIDs whose answers are known."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from semid.datamodules.corpus import Items
from semid.core.errors import SemidError
from semid.rqvae.compare import compare_tables, match_codes, prefix_pair_stability
from semid.rqvae.health import code_counts, collision_histogram, uniqueness, usage_stats
from semid.rqvae.report import pair_similarity, parse_prefix, sid_report, table1, _unit
from semid.rqvae.sid_table import SidTable

# five items; a and b point the same way (b is longer), c and d are orthogonal to them, e opposes d
EMB = np.array([[1, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -3]], dtype=np.float32)
CODES = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.int32)


def test_table1_by_hand() -> None:
    t = table1(CODES, EMB)
    n1, n2 = t["rows"]
    # n = 1: groups {a, b, c} and {d, e}: pairs ab = 1, ac = bc = 0, de = -1 -> 0 / 4
    assert n1["pairs"] == 4 and n1["avg_cosine_similarity"] == pytest.approx(0.0)
    assert (n1["subtrie_size_p25"], n1["subtrie_size_p75"]) == (2.25, 2.75)  # sizes [3, 2]
    # n = 2: groups {a, b}, {c}, {d}, {e}: the single pair ab -> 1
    assert n2["pairs"] == 1 and n2["avg_cosine_similarity"] == pytest.approx(1.0)
    assert n2["prefixes"] == 4 and (n2["subtrie_size_p25"], n2["subtrie_size_p75"]) == (1.0, 1.25)
    # random pairs: 10 pairs, ab = 1 and de = -1, all others 0
    assert t["random_pairs"] == 10 and t["random_pair_baseline"] == pytest.approx(0.0)


def test_pair_similarity_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 4)).astype(np.float32) + np.array([1, 0, 0, 0], np.float32)
    group = rng.integers(0, 7, size=60)
    u = emb.astype(np.float64) / np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True)
    sims = [u[i] @ u[j] for i, j in itertools.combinations(range(60), 2) if group[i] == group[j]]
    mean, pairs = pair_similarity(_unit(emb), group)
    assert pairs == len(sims) and mean == pytest.approx(np.mean(sims), abs=1e-9)
    assert pair_similarity(_unit(emb), np.arange(60)) == (None, 0)  # no shared group, no pairs


def test_health_numbers_by_hand() -> None:
    util, ppl = usage_stats(code_counts(CODES, 4))
    assert util.tolist() == [0.5, 0.5]  # codes {0, 1} of K = 4 at both levels
    assert ppl[0] == pytest.approx(np.exp(-(0.6 * np.log(0.6) + 0.4 * np.log(0.4))))
    u = uniqueness(CODES)
    assert u["unique_sids"] == 4 and u["unique_sid_fraction"] == 0.8 and u["largest_collision_group"] == 2
    assert collision_histogram(CODES) == {1: 3, 2: 1}


def test_report_and_subtrie_browser() -> None:
    ids = np.array([1, 2, 3, 4, 5])
    table = SidTable(ids, CODES, 4, "fp")
    items = Items(ids, EMB, np.zeros(5, np.int32), {"title": np.array(["a", "b", "c", "d", "e"], dtype=object)})
    r = sid_report(table, items, prefix=(0,))
    st = r["subtrie"]
    assert st["items"] == 3
    assert [c["code"] for c in st["children"]] == [0, 1]  # largest branch first
    assert st["children"][0]["titles"] == ["1: a", "2: b"]
    assert r["uniqueness"]["unique_sids"] == 4
    with pytest.raises(SemidError, match="no item has the SID prefix"):
        sid_report(table, items, prefix=(3,))
    with pytest.raises(SemidError, match="only 2 levels"):
        sid_report(table, items, prefix=(0, 0, 0))
    assert parse_prefix("3, 17") == (3, 17)
    with pytest.raises(SemidError, match="--prefix"):
        parse_prefix("3,x")


def test_compare_by_hand() -> None:
    a = np.array([[0], [0], [1], [1]])
    b = np.array([[0], [0], [0], [1]])
    assert match_codes(a[:, 0], b[:, 0], 2, 2)[0] == 3  # 0->0 (2 items) and 1->1 (1 item)
    s = prefix_pair_stability(a, b, 1)
    # A pairs: (0,1), (2,3); B pairs: (0,1), (0,2), (1,2); both: (0,1)
    assert (s["pairs_a"], s["pairs_b"], s["pairs_both"]) == (2, 3, 1)
    assert s["a_pairs_kept_in_b"] == 0.5 and s["b_pairs_kept_in_a"] == pytest.approx(1 / 3)


def test_relabelled_tables_agree_fully() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 8, size=(200, 3)).astype(np.int32)
    perm = rng.permutation(8)
    ids = np.arange(200) * 3
    a = SidTable(ids, codes, 8, "A")
    b = SidTable(ids[50:], perm[codes[50:]].astype(np.int32), 8, "B")  # same partition, other labels
    r = compare_tables(a, b)
    assert r["common_items"] == 150 and not r["same_rqvae"]
    assert [lv["agreement"] for lv in r["per_level"]] == [1.0, 1.0, 1.0]
    assert all(s["a_pairs_kept_in_b"] == 1.0 for s in r["prefix_stability"])
    assert r["identical_sids"] < 0.2
    with pytest.raises(SemidError, match="no item in common"):
        compare_tables(a, SidTable(ids + 1, codes, 8, "C"))


def test_a_collapsed_codebook_is_warned_about_and_recorded() -> None:
    from semid.rqvae.train import collapse_warnings

    healthy = {"items": 1000, "utilisation_per_level": [1.0, 0.9], "unique_sids": 800}
    assert collapse_warnings(healthy, 2, 64) == []
    collapsed = {"items": 1000, "utilisation_per_level": [0.06, 0.5], "unique_sids": 5}
    w = collapse_warnings(collapsed, 2, 64)
    assert len(w) == 2 and "level 0 uses 6.0% of its 64 codes" in w[0] and "only 5 distinct SIDs" in w[1]
