"""``semid data stats``: what a user needs to trust a corpus, computed in one streaming pass."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from semid.datamodules.corpus import Corpus, to_int64
from semid.datamodules.gate import open_corpus
from semid.core.errors import SemidError
from semid.core.ids import locate
from semid.core.progress import progress

HEAD, TORSO, TAIL = 0, 1, 2
BUCKETS = ("head", "torso", "tail")


def popularity_buckets(impressions: np.ndarray, head_share: float = 0.5, torso_share: float = 0.3) -> np.ndarray:
    """HEAD / TORSO / TAIL (int8) per item by impressions.

    Items sorted by impressions (most first): head = the items that make the first ``head_share`` of all
    impressions (the item crossing it included), torso = the next ``torso_share``, tail = the rest
    (never-impressed items included).
    """
    imp = np.asarray(impressions, np.float64)
    if not (0 < head_share and 0 <= torso_share and head_share + torso_share <= 1):
        raise SemidError(f"need head_share > 0, torso_share >= 0, sum <= 1; got {head_share}, {torso_share}")
    out = np.full(len(imp), TAIL, np.int8)
    total = imp.sum()
    if total <= 0:
        return out
    order = np.argsort(-imp, kind="stable")
    before = (np.cumsum(imp[order]) - imp[order]) / total  # share of impressions of more popular items
    label = np.where(before < head_share, HEAD, np.where(before < head_share + torso_share, TORSO, TAIL))
    label[imp[order] == 0] = TAIL
    out[order] = label
    return out


def corpus_impressions(corpus: Corpus, item_ids: np.ndarray, days: list[int] | None = None) -> np.ndarray:
    """Impressions per item (aligned with sorted ``item_ids``) over ``days`` (default: all days)."""
    counts = np.zeros(len(item_ids), np.int64)
    wanted = corpus.days() if days is None else list(days)
    missing = sorted(set(wanted) - set(corpus.days()))
    if missing:
        raise SemidError(f"{corpus.impressions_path}: no impressions for day(s) {missing[:5]} "
                         f"(days present: {corpus.days()[0]}..{corpus.days()[-1]})")
    for day in progress(wanted, "impressions", unit="day"):
        ids = to_int64(corpus.read_day(day, columns=["item_id"])["item_id"], corpus.impressions_path, "item_id")
        pos, found = locate(item_ids, ids)
        counts += np.bincount(pos[found], minlength=len(item_ids))
    return counts


def fit_zipf_exponent(counts: np.ndarray, min_count: int = 5) -> float | None:
    """Least-squares slope of log(count) vs log(rank) over items with at least ``min_count`` impressions."""
    c = np.sort(counts[counts >= min_count])[::-1].astype(np.float64)
    if len(c) < 10:
        return None
    ranks = np.arange(1, len(c) + 1, dtype=np.float64)
    slope, _ = np.polyfit(np.log(ranks), np.log(c), 1)
    return float(-slope)


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    q = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(x.max())}


def corpus_stats(path: str | Path) -> dict[str, Any]:
    corpus = open_corpus(path)  # statistics of data `semid data validate` refuses would mislead
    items = corpus.read_items(columns=["item_id", "embedding", "first_day"])
    counts = np.zeros(len(items), dtype=np.int64)
    per_day = []
    total = clicks = engaged = watch_null = 0
    history_at_day: list[np.ndarray] = []
    user_clicks = np.zeros(0, dtype=np.int64)
    user_index: dict[int, int] = {}
    for day, t in progress(corpus.iter_days(), "stats", total=len(corpus.days()), unit="day"):
        f = corpus.impressions_path / f"day={day:04d}"  # names the day in a message (none can come: checked)
        uid = to_int64(t["user_id"], f, "user_id")
        iid = to_int64(t["item_id"], f, "item_id")
        click = to_int64(t["click"], f, "click")
        idx = items.index_of(iid)
        counts += np.bincount(idx[idx >= 0], minlength=len(items))
        # history length of each impression = the user's clicks on earlier days (what the ranker may use)
        new_users = np.setdiff1d(np.unique(uid), np.fromiter(user_index, dtype=np.int64, count=len(user_index)))
        for u in new_users.tolist():
            user_index[u] = len(user_index)
        user_clicks = np.concatenate([user_clicks, np.zeros(len(user_index) - len(user_clicks), np.int64)])
        urow = _map_ids(uid, user_index)
        history_at_day.append(user_clicks[urow][:: max(1, len(urow) // 20000)])
        np.add.at(user_clicks, urow[click == 1], 1)
        new_items = int((items.first_day == day).sum())
        on_new = int((items.first_day[idx] == day).sum())
        n = len(t)
        day_clicks = int(click.sum())
        eng = int(to_int64(t["engaged"], f, "engaged").sum()) if "engaged" in t.column_names else None
        wn = int(t["watch_item_id"].null_count) if "watch_item_id" in t.column_names else n
        per_day.append({"day": day, "impressions": n, "users": int(len(np.unique(uid))), "ctr": day_clicks / n,
                        "new_items": new_items, "impressions_on_new_items": on_new})
        total += n
        clicks += day_clicks
        engaged += eng or 0
        watch_null += wn
    hist = np.concatenate(history_at_day) if history_at_day else np.zeros(0)
    impressed = counts[counts > 0]
    order = np.sort(impressed)[::-1]
    cum = np.cumsum(order) / max(order.sum(), 1)
    top1 = max(1, len(order) // 100)
    out = {
        "corpus": str(corpus.path),
        "fingerprint": corpus.fingerprint,
        "source": corpus.meta.get("source", "unknown"),
        "items": len(items),
        "embedding_dim": items.dim,
        "users": len(user_index),
        "days": len(per_day),
        "impressions": total,
        "ctr": clicks / max(total, 1),
        "engaged_rate": engaged / max(total, 1),
        "watch_item_null_fraction": watch_null / max(total, 1),
        "items_impressed": int(len(impressed)),
        "zipf_exponent": fit_zipf_exponent(counts),
        "top1pct_items_impression_share": float(cum[top1 - 1]) if len(cum) else 0.0,
        "history_length_at_impression": _quantiles(hist.astype(np.float64)),
        "per_day": per_day,
    }
    if "ground_truth" in corpus.meta:
        gt = corpus.meta["ground_truth"]
        out["ground_truth"] = {k: v for k, v in gt.items() if k.startswith("auc_") or k.startswith("share")}
    return out


def _map_ids(ids: np.ndarray, index: dict[int, int]) -> np.ndarray:
    keys = np.fromiter(index.keys(), dtype=np.int64, count=len(index))
    vals = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    o = np.argsort(keys)
    return vals[o][np.searchsorted(keys[o], ids)]


def render_stats(s: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=110)
    head = Table(title=f"corpus {s['corpus']}  (fingerprint {s['fingerprint']}, source {s['source']})",
                 show_header=False)
    rows = [
        ("items", f"{s['items']:,} (embedding dim {s['embedding_dim']}; impressed {s['items_impressed']:,})"),
        ("users", f"{s['users']:,}"),
        ("days", f"{s['days']}"),
        ("impressions", f"{s['impressions']:,}"),
        ("click rate", f"{s['ctr']:.4f}"),
        ("engaged rate", f"{s['engaged_rate']:.4f}"),
        ("watch item missing", f"{s['watch_item_null_fraction']:.2%}"),
        ("popularity (Zipf exponent)", "n/a (too few items)" if s["zipf_exponent"] is None
         else f"{s['zipf_exponent']:.2f}; top 1% of items get {s['top1pct_items_impression_share']:.1%}"),
        ("history length (earlier-day clicks)", ", ".join(f"{k} {v:.1f}" for k, v in
                                                          s["history_length_at_impression"].items())),
    ]
    for k, v in (s.get("ground_truth") or {}).items():
        rows.append((f"truth: {k}", "n/a" if v is None else f"{v:.4f}"))
    for k, v in rows:
        head.add_row(k, v)
    console.print(head)
    days = Table(title="per day")
    for col in ("day", "impressions", "users", "ctr", "new items", "impressions on new items"):
        days.add_column(col, justify="right")
    for d in s["per_day"]:
        days.add_row(str(d["day"]), f"{d['impressions']:,}", f"{d['users']:,}", f"{d['ctr']:.4f}",
                     f"{d['new_items']:,}", f"{d['impressions_on_new_items']:,}")
    console.print(days)
    return console.export_text()
