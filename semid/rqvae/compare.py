"""``semid sids compare A B``: how far two SID tables agree (paper Appendix A.2, stability).

* Per-level code agreement: codes of two independently trained models are arbitrary labels, so the
  codes of level l in A are matched one-to-one to codes of level l in B to maximise the items on which
  they agree (Hungarian via scipy when installed, else greedy on the confusion matrix — greedy takes
  the largest remaining cell first and can fall short of the optimum, it never exceeds it).
* Prefix stability: of the item pairs that share a SID prefix of length n in A, the share that also
  share a prefix of length n in B (and the reverse). Exact: pairs are counted from group sizes.
"""
from __future__ import annotations

import numpy as np

from semid.core.errors import SemidError
from semid.rqvae.records import LevelAgreement, PrefixStability, SidComparison
from semid.rqvae.health import sid_groups
from semid.rqvae.sid_table import SidTable


def match_codes(a: np.ndarray, b: np.ndarray, k_a: int, k_b: int) -> tuple[int, str]:
    """(items whose A-code maps to their B-code under the best one-to-one matching, method used)."""
    confusion = np.zeros((k_a, k_b), dtype=np.int64)
    np.add.at(confusion, (a, b), 1)
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return _greedy_matching(confusion), "greedy"
    ri, ci = linear_sum_assignment(-confusion)
    return int(confusion[ri, ci].sum()), "hungarian"


def _greedy_matching(confusion: np.ndarray) -> int:
    rows, cols = np.nonzero(confusion)
    counts = confusion[rows, cols]
    order = np.argsort(-counts, kind="stable")
    used_r = np.zeros(confusion.shape[0], bool)
    used_c = np.zeros(confusion.shape[1], bool)
    total = 0
    for i in order:
        r, c = rows[i], cols[i]
        if not used_r[r] and not used_c[c]:
            used_r[r] = used_c[c] = True
            total += int(counts[i])
    return total


def _pairs(sizes: np.ndarray) -> int:
    s = sizes.astype(np.int64)
    return int((s * (s - 1) // 2).sum())


def prefix_pair_stability(a: np.ndarray, b: np.ndarray, n: int) -> PrefixStability:
    """Pairs sharing a prefix of length n in A, in B, in both; shares of each kept by the other."""
    ga, sa = sid_groups(a[:, :n])
    gb, sb = sid_groups(b[:, :n])
    _, both_sizes = sid_groups(np.stack([ga, gb], axis=1))  # cells of the A x B contingency table
    pa, pb, both = _pairs(sa), _pairs(sb), _pairs(both_sizes)
    return {"n": n, "pairs_a": pa, "pairs_b": pb, "pairs_both": both,
            "a_pairs_kept_in_b": both / pa if pa else None, "b_pairs_kept_in_a": both / pb if pb else None}


def compare_tables(a: SidTable, b: SidTable) -> SidComparison:
    common, ia, ib = np.intersect1d(a.item_id, b.item_id, assume_unique=True, return_indices=True)
    if len(common) == 0:
        raise SemidError("the two SID tables have no item in common; compare tables of the same corpus")
    ca, cb = a.codes[ia], b.codes[ib]
    levels = min(a.levels, b.levels)
    per_level: list[LevelAgreement] = []
    method = "identity"
    for level in range(levels):
        matched, method = match_codes(ca[:, level], cb[:, level], a.codebook_size, b.codebook_size)
        per_level.append({"level": level, "agreement": matched / len(common),
                          "raw_agreement": float((ca[:, level] == cb[:, level]).mean())})
    return {
        "items_a": len(a), "items_b": len(b), "common_items": int(len(common)),
        "levels_compared": levels, "matching": method,
        "same_rqvae": a.rqvae_fingerprint == b.rqvae_fingerprint,
        "identical_sids": float((ca[:, :levels] == cb[:, :levels]).all(axis=1).mean()),
        "per_level": per_level,
        "prefix_stability": [prefix_pair_stability(ca, cb, n) for n in range(1, levels + 1)],
    }


def render_compare(result: SidComparison) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{result['common_items']:,} common items (A {result['items_a']:,}, B {result['items_b']:,}); "
                  f"same RQ-VAE: {result['same_rqvae']}; identical SIDs: {result['identical_sids']:.2%}")
    t = Table(title=f"Per-level code agreement (matching: {result['matching']})")
    for col in ("level", "agreement after matching", "raw agreement"):
        t.add_column(col, justify="right")
    for r in result["per_level"]:
        t.add_row(str(r["level"]), f"{r['agreement']:.2%}", f"{r['raw_agreement']:.2%}")
    console.print(t)
    s = Table(title="Prefix stability: item pairs sharing a prefix of length n")
    for col in ("n", "pairs in A", "pairs in B", "in both", "A kept in B", "B kept in A"):
        s.add_column(col, justify="right")
    fmt = lambda v: "—" if v is None else f"{v:.2%}"  # noqa: E731
    for r in result["prefix_stability"]:
        s.add_row(str(r["n"]), f"{r['pairs_a']:,}", f"{r['pairs_b']:,}", f"{r['pairs_both']:,}",
                  fmt(r["a_pairs_kept_in_b"]), fmt(r["b_pairs_kept_in_a"]))
    console.print(s)
