"""Embedding lookups per item vs table size (the paper's Figure 4), split by item popularity.

SPM's lookups per item depend on the vocabulary and on the item: popular items' SIDs merge into few
pieces, rare items fall back to unigrams. N-gram representations have a fixed count (unigram L,
bigram ceil(L/2), hashing 1) whatever the item.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from semid.datamodules import BUCKETS, popularity_buckets
from semid.embeddings.hashing import HashConfig
from semid.embeddings.ngram import NgramConfig
from semid.embeddings.registry import RepresentationConfig
from semid.embeddings.spm import SpmConfig
from semid.embeddings.token_cache import TokenCache, build_token_cache
from semid.core.progress import progress
from semid.embeddings.records import LookupReport, LookupStats
from semid.rqvae import SidTable

DEFAULT_VOCAB_SIZES = (512, 1024, 2048, 4096, 8192, 16384, 32768)


def lookup_stats(cache: TokenCache, buckets: np.ndarray) -> LookupStats:
    """Table size, mean lookups per item overall and per popularity bucket, and the <unk> share for SPM."""
    per_item = cache.lookups_per_item()
    row: LookupStats = {
        "name": cache.name, "kind": cache.kind, "table_rows": int(sum(t.num_rows for t in cache.tables)),
        "tables": len(cache.tables), "mean_lookups": {"all": float(per_item.mean()) if len(per_item) else 0.0},
        "items": {"all": len(per_item)},
    }
    for b in BUCKETS:
        sel = buckets == b
        row["mean_lookups"][b] = float(per_item[sel].mean()) if sel.any() else None
        row["items"][b] = int(sel.sum())
    if cache.kind == "spm":
        vals = cache.jagged[0].values
        row["unk_token_share"] = float((vals == 0).mean()) if len(vals) else 0.0
        row["requested_vocab_size"] = cache.config.vocab_size  # type: ignore[union-attr]
    return row


def lookup_report(sids: SidTable, item_ids: np.ndarray, impressions: np.ndarray,
                  vocab_sizes: Sequence[int] = DEFAULT_VOCAB_SIZES, hash_rows: int = 8192) -> LookupReport:
    """Figure 4's numbers: SPM at several vocabulary sizes vs unigram, bigram and hashing."""
    item_ids = np.asarray(item_ids, np.int64)
    buckets = np.asarray(BUCKETS)[popularity_buckets(impressions)]  # 'head' / 'torso' / 'tail' per item
    reps: list[RepresentationConfig] = [SpmConfig(name=f"spm_{v}", vocab_size=int(v)) for v in vocab_sizes]
    reps += [NgramConfig(name="unigram", n=1), NgramConfig(name="bigram", n=2),
             HashConfig(name=f"hash_{hash_rows}", rows=hash_rows)]
    rows, notes = [], []
    for cfg in progress(reps, "representations"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cache = build_token_cache(cfg, sids, item_ids, impressions)
        notes += [str(w.message) for w in caught]
        rows.append(lookup_stats(cache, buckets))
    return {
        "sid_levels": sids.levels, "codebook_size": sids.codebook_size, "sid_space": sids.space_fingerprint,
        "sid_table": sids.fingerprint, "items": len(item_ids), "impressions": int(np.sum(impressions)),
        "bucket_definition": "items by impressions, most first: head = first 50% of impressions, torso = the "
                             "next 30%, tail = the rest (never-impressed included)",
        "representations": rows, "warnings": notes,
    }


def render_report(report: LookupReport) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=120)
    t = Table(title=f"embedding lookups per item vs table size  (L={report['sid_levels']}, "
                    f"K={report['codebook_size']}, {report['items']:,} items)")
    for col in ("representation", "table rows", "tables", "all", *BUCKETS, "<unk> share"):
        t.add_column(col, justify="left" if col == "representation" else "right")
    for r in report["representations"]:
        m = r["mean_lookups"]
        t.add_row(r["name"], f"{r['table_rows']:,}", str(r["tables"]),
                  *[("-" if m[b] is None else f"{m[b]:.2f}") for b in ("all", *BUCKETS)],
                  f"{r['unk_token_share']:.2%}" if "unk_token_share" in r else "")
    counts = report["representations"][0]["items"]
    console.print(t)
    console.print("items per bucket: " + ", ".join(f"{b} {counts[b]:,}" for b in BUCKETS) +
                  f"  ({report['bucket_definition']})")
    return console.export_text()


def plot_report(report: LookupReport, path: str | Path) -> Path:
    """Figure 4: x = table size (log), y = mean lookups per item; SPM lines per bucket, N-gram points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semid.core.artifacts import atomic_path

    spm = sorted((r for r in report["representations"] if r["kind"] == "spm"), key=lambda r: r["table_rows"])
    other = [r for r in report["representations"] if r["kind"] != "spm"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"head": "tab:red", "torso": "tab:orange", "tail": "tab:blue", "all": "black"}
    for b in (*BUCKETS, "all"):
        pts = [(r["table_rows"], r["mean_lookups"][b]) for r in spm if r["mean_lookups"][b] is not None]
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, marker="o", color=styles[b], linestyle="--" if b == "all" else "-", label=f"SPM {b}")
    for r, marker in zip(other, ("s", "^", "D", "v", "P")):
        ax.scatter([r["table_rows"]], [r["mean_lookups"]["all"]], marker=marker, s=60,
                   color="tab:green" if r["kind"] == "ngram" else "tab:gray",
                   zorder=3, label=f"{r['name']} (N-gram)" if r["kind"] == "ngram" else r["name"])
    ax.set_xscale("log")
    ax.set_xlabel("table size (rows, log scale)")
    ax.set_ylabel("mean embedding lookups per item")
    ax.set_title(f"Lookups per item vs table size (L={report['sid_levels']}, K={report['codebook_size']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)
    return path
