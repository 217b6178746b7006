"""A toy click log for the examples, made in memory with numpy: items with content embeddings, users with a
favourite topic, five days of impressions, and new items that appear only on the held-out last day.

A click depends on whether the item's topic is the user's (content: a model can generalise it to new items)
and on a per-item quality that content does not show (memorisation: only an item's own rows learn it). Item ids
are large and sparse, as real ones are. Nothing here is semid: it stands in for your own logs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

# SEMID_EXAMPLES_QUICK=1 (the test that runs the examples in CI) halves the log: the same code, faster
QUICK = os.environ.get("SEMID_EXAMPLES_QUICK") == "1"


@dataclass
class ToyLogs:
    item_id: np.ndarray  # [N] int64, every item (the last day's new ones included)
    content: np.ndarray  # [N, D] float32 content embeddings
    new: np.ndarray  # [N] bool: introduced on the held-out day
    impressions: dict[str, np.ndarray]  # user_id, item_id, dense [M, 4], click, day: one row per impression

    def day(self, days: slice) -> dict[str, np.ndarray]:
        keep = (self.impressions["day"] >= days.start) & (self.impressions["day"] < days.stop)
        return {k: v[keep] for k, v in self.impressions.items()}


def make_logs(seed: int = 0, n_items: int = 3000, n_new: int = 300, n_users: int = 2000, n_topics: int = 24,
              dim: int = 32, per_day: int = 25_000, days: int = 5) -> ToyLogs:
    if QUICK:
        n_items, n_new, n_users, per_day = n_items // 2, n_new // 2, n_users // 2, per_day // 2
    rng = np.random.default_rng(seed)
    n = n_items + n_new
    item_id = rng.choice(10**12, size=n, replace=False).astype(np.int64)
    topic = rng.integers(0, n_topics, n)
    centres = rng.normal(size=(n_topics, dim))
    content = centres[topic] + 0.35 * rng.normal(size=(n, dim))
    content = (content / np.linalg.norm(content, axis=1, keepdims=True)).astype(np.float32)
    quality = rng.normal(size=n)
    new = np.zeros(n, bool)
    new[n_items:] = True
    likes = rng.integers(0, n_topics, n_users)
    rows = []
    for d in range(days):
        pool = np.flatnonzero(~new) if d < days - 1 else np.arange(n)  # new items only on the last day
        user = rng.integers(0, n_users, per_day)
        # half the candidates come from the user's topic, half at random: clicks then depend on both signals
        same = rng.random(per_day) < 0.5
        item = rng.choice(pool, per_day)
        by_topic = [pool[topic[pool] == t] for t in range(n_topics)]
        for t in np.unique(likes[user[same]]):
            sel = np.flatnonzero(same & (likes[user] == t))
            if len(by_topic[t]):
                item[sel] = rng.choice(by_topic[t], len(sel))
        logit = -1.0 + 1.6 * (topic[item] == likes[user]) + 0.9 * quality[item]
        click = (rng.random(per_day) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        dense = rng.normal(size=(per_day, 4)).astype(np.float32)
        rows.append((user, item, dense, click, np.full(per_day, d)))
    user, item, dense, click, day = (np.concatenate(c) for c in zip(*rows))
    return ToyLogs(item_id, content, new, {"user_id": user.astype(np.int64), "item_id": item_id[item],
                                           "item_row": item, "dense": dense, "click": click, "day": day,
                                           "history": _history(user, item_id[item], click, day, n_users)})


def _history(user: np.ndarray, item: np.ndarray, click: np.ndarray, day: np.ndarray, n_users: int,
             length: int = 8) -> np.ndarray:
    """Each impression's user history: the user's last ``length`` clicked items of earlier days ([M, length],
    -1 where shorter). Earlier days only, so no impression sees its own day's clicks."""
    out = np.full((len(user), length), -1, np.int64)
    last = np.full((n_users, length), -1, np.int64)
    for d in np.unique(day):
        rows = np.flatnonzero(day == d)
        out[rows] = last[user[rows]]
        for r in rows[click[rows] > 0]:  # then fold in the day's clicks, newest last
            last[user[r]] = np.roll(last[user[r]], -1)
            last[user[r], -1] = item[r]
    return out
