"""``semid sids report``: the paper's Table 1 and the SID health of a SID table on its corpus.

Table 1: for each prefix length n = 1..L, the average cosine similarity over all pairs of items that
share a SID prefix of length n, and the 25th-75th percentile of sub-trie sizes (items per prefix).

The average is exact, not sampled: for unit vectors u_i of a group g,
``Σ_{i<j∈g} u_i·u_j = (||Σ_{i∈g} u_i||² - Σ_{i∈g} ||u_i||²) / 2``, so one pass of group sums gives the sum
over all pairs of every group, whatever its size. The random-pair baseline is the same identity over
the whole corpus.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from semid.datamodules import Items
from semid.core.errors import SemidError
from semid.rqvae.records import SidReport, SubtrieNode, Table1, Table1Row
from semid.rqvae.health import code_counts, collision_histogram, sid_groups, uniqueness, usage_stats
from semid.rqvae.sid_table import SidTable

if TYPE_CHECKING:  # rich loads in render_report only: callers of table1 / sid_report do not pay for it
    from rich.tree import Tree


@dataclass
class Joined:
    """SIDs and embeddings of the items present in both the table and the corpus, row-aligned."""

    item_id: np.ndarray  # int64 [N]
    codes: np.ndarray  # int32 [N, L]
    embedding: np.ndarray  # float32 [N, D]
    titles: np.ndarray | None  # object [N] or None
    missing_from_corpus: int


def join(table: SidTable, items: Items) -> Joined:
    rows = items.index_of(table.item_id)
    ok = rows >= 0
    if not ok.any():
        raise SemidError("no item of the SID table is in the corpus (wrong --corpus for this sids.parquet?)")
    titles = items.extra.get("title")
    return Joined(table.item_id[ok], table.codes[ok], items.embedding[rows[ok]],
                  None if titles is None else np.asarray(titles, dtype=object)[rows[ok]], int((~ok).sum()))


def _unit(embedding: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(embedding, dtype=np.float64))
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-300)  # zero vectors stay zero


def pair_similarity(unit: torch.Tensor, group: np.ndarray) -> tuple[float | None, int]:
    """(mean cosine similarity over all within-group pairs, number of such pairs); None when there are none."""
    g = torch.from_numpy(group)
    n_groups = int(group.max()) + 1 if len(group) else 0
    sums = torch.zeros(n_groups, unit.shape[1], dtype=torch.float64).index_add_(0, g, unit)  # Σ_{i∈g} u_i
    sq = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, g, (unit * unit).sum(1))  # Σ ||u_i||²
    sizes = torch.bincount(g, minlength=n_groups).to(torch.float64)
    pairs = float((sizes * (sizes - 1) / 2).sum())
    if pairs == 0:
        return None, 0
    total = float(((sums * sums).sum(1) - sq).sum() / 2)
    return total / pairs, int(pairs)


def table1(codes: np.ndarray, embedding: np.ndarray) -> Table1:
    """Rows n = 1..L of the paper's Table 1, plus the random-pair baseline."""
    unit = _unit(embedding)
    rows: list[Table1Row] = []
    for n in range(1, codes.shape[1] + 1):
        group, sizes = sid_groups(codes[:, :n])
        sim, pairs = pair_similarity(unit, group)
        p25, p50, p75 = np.percentile(sizes, [25, 50, 75])
        rows.append({"n": n, "avg_cosine_similarity": sim, "pairs": pairs, "prefixes": int(len(sizes)),
                     "subtrie_size_p25": float(p25), "subtrie_size_median": float(p50),
                     "subtrie_size_p75": float(p75)})
    baseline, pairs = pair_similarity(unit, np.zeros(len(codes), np.int64))
    return {"rows": rows, "random_pair_baseline": baseline, "random_pairs": pairs}


def subtrie(joined: Joined, prefix: tuple[int, ...], max_children: int = 8, max_items: int = 5) -> SubtrieNode:
    """The tree under ``prefix``: nested {code, items, children | titles}, largest branches first."""
    levels = joined.codes.shape[1]
    if len(prefix) > levels:
        raise SemidError(f"--prefix has {len(prefix)} codes but the SIDs have only {levels} levels")
    mask = (joined.codes[:, :len(prefix)] == np.asarray(prefix, dtype=np.int32)).all(axis=1)
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        raise SemidError(f"no item has the SID prefix {','.join(map(str, prefix))} (see the report's "
                         "utilisation table for codes in use)")

    def label(r: int) -> str:
        t = joined.titles[r] if joined.titles is not None else None
        return f"{int(joined.item_id[r])}: {t}" if t else f"item {int(joined.item_id[r])}"

    def node(rows: np.ndarray, depth: int) -> SubtrieNode:
        out: SubtrieNode = {"items": int(len(rows))}
        if depth == levels:
            out["titles"] = [label(r) for r in rows[:max_items]]
            out["more_items"] = int(max(0, len(rows) - max_items))
            return out
        codes, counts = np.unique(joined.codes[rows, depth], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        out["children"] = [{"code": int(codes[i]), **node(rows[joined.codes[rows, depth] == codes[i]], depth + 1)}
                           for i in order[:max_children]]
        hidden = order[max_children:]
        out["more_children"] = int(len(hidden))
        out["more_children_items"] = int(counts[hidden].sum()) if len(hidden) else 0
        return out

    return {"prefix": list(prefix), **node(rows, len(prefix))}


def sid_report(table: SidTable, items: Items, prefix: tuple[int, ...] | None = None,
               max_children: int = 8, max_items: int = 5) -> SidReport:
    joined = join(table, items)
    util, ppl = usage_stats(code_counts(joined.codes, table.codebook_size))
    report: SidReport = {
        "items": int(len(joined.item_id)), "missing_from_corpus": joined.missing_from_corpus,
        "levels": table.levels, "codebook_size": table.codebook_size, "collision_suffix": table.collision_suffix,
        "rqvae_fingerprint": table.rqvae_fingerprint, "table_fingerprint": table.fingerprint,
        "table1": table1(joined.codes, joined.embedding),
        "utilisation_per_level": [float(u) for u in util], "perplexity_per_level": [float(p) for p in ppl],
        "uniqueness": uniqueness(joined.codes),
        "collision_histogram": collision_histogram(joined.codes),
    }
    if prefix is not None:
        report["subtrie"] = subtrie(joined, prefix, max_children, max_items)
    return report


def parse_prefix(text: str) -> tuple[int, ...]:
    try:
        codes = tuple(int(p) for p in text.replace(" ", "").split(",") if p != "")
    except ValueError:
        raise SemidError(f"--prefix {text!r} must be comma-separated codes, e.g. --prefix 3,17") from None
    if not codes or min(codes) < 0:
        raise SemidError(f"--prefix {text!r} must be one or more non-negative codes, e.g. --prefix 3,17")
    return codes


def _bucket(sizes: dict[int, int]) -> list[tuple[str, int, int]]:
    """Collision histogram in readable buckets: (label, SIDs, items)."""
    edges = [(1, 1), (2, 2), (3, 4), (5, 9), (10, 99), (100, None)]
    out = []
    for lo, hi in edges:
        sel = {s: c for s, c in sizes.items() if s >= lo and (hi is None or s <= hi)}
        if sel:
            label = f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi is not None else f"{lo}+")
            out.append((label, sum(sel.values()), sum(s * c for s, c in sel.items())))
    return out


def render_report(report: SidReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    console = Console()
    t1 = report["table1"]
    levels = f"L={report['levels']}" + (" (the last: collision suffix)" if report.get("collision_suffix") else "")
    tab = Table(title=f"Table 1 — {report['items']:,} items, {levels}, K={report['codebook_size']}")
    for col in ("prefix n", "avg cos sim", "pairs", "prefixes", "sub-trie p25-p75 (median)"):
        tab.add_column(col, justify="right")
    for r in t1["rows"]:
        sim = "—" if r["avg_cosine_similarity"] is None else f"{r['avg_cosine_similarity']:.3f}"
        tab.add_row(str(r["n"]), sim, f"{r['pairs']:,}", f"{r['prefixes']:,}",
                    f"{r['subtrie_size_p25']:g}-{r['subtrie_size_p75']:g} ({r['subtrie_size_median']:g})")
    base = t1["random_pair_baseline"]
    tab.add_row("random", "—" if base is None else f"{base:.3f}", f"{t1['random_pairs']:,}", "", "")
    console.print(tab)

    lv = Table(title="Codes per level")
    for col in ("level", "utilisation", "perplexity"):
        lv.add_column(col, justify="right")
    for i, (u, p) in enumerate(zip(report["utilisation_per_level"], report["perplexity_per_level"])):
        lv.add_row(str(i), f"{u:.1%}", f"{p:.1f}")
    console.print(lv)

    u = report["uniqueness"]
    col = Table(title=f"Collisions — unique SIDs {u['unique_sid_fraction']:.2%}, largest group "
                      f"{u['largest_collision_group']}")
    for c in ("items per SID", "SIDs", "items"):
        col.add_column(c, justify="right")
    for label, n_sids, n_items in _bucket(report["collision_histogram"]):
        col.add_row(label, f"{n_sids:,}", f"{n_items:,}")
    console.print(col)
    if report.get("missing_from_corpus"):
        console.print(f"[yellow]{report['missing_from_corpus']:,} item(s) of the table are not in the corpus "
                      "and were left out[/yellow]")

    if "subtrie" in report:
        st = report["subtrie"]
        tree = Tree(f"prefix {','.join(map(str, st['prefix']))}: {st['items']:,} items")
        _add_tree(tree, st)
        console.print(tree)


def _add_tree(parent: Tree, node: SubtrieNode) -> None:
    for title in node.get("titles", []):
        parent.add(title)
    if node.get("more_items"):
        parent.add(f"[dim]… {node['more_items']} more items[/dim]")
    for child in node.get("children", []):
        _add_tree(parent.add(f"[bold]{child['code']}[/bold] ({child['items']:,} items)"), child)
    if node.get("more_children"):
        parent.add(f"[dim]… {node['more_children']} more codes ({node['more_children_items']:,} items)[/dim]")
