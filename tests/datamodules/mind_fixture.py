"""A tiny MIND folder in MIND's exact format (tab-separated, no header): behaviors.tsv and news.tsv.

MIND itself cannot be shipped; this writes 5 days (2019-11-09..13) of 24 users, 2 impressions a user a day, 6
shown news each with 1-2 clicks, news arriving every day, and a 3-item history column per user."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TOPICS = ["sports", "finance", "weather", "music", "health", "travel"]
N_NEWS, N_USERS, DAYS = 60, 24, 5


def news_id(i: int) -> str:
    return f"N{1000 + i}"


def write_mind(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(N_NEWS):
        topic = TOPICS[i % len(TOPICS)]
        abstract = "" if i % 7 == 0 else f"A short story about {topic} number {i}."
        lines.append("\t".join([news_id(i), topic, f"{topic}sub", f"The {topic} news {i}", abstract,
                                f"https://assets.msn.com/labs/mind/{news_id(i)}.html", "[]", "[]"]))
    (folder / "news.tsv").write_text("\n".join(lines) + "\n")
    rows = []
    imp = 1
    for d in range(DAYS):
        live = 30 + 6 * d  # news 0..live-1 are out on day d
        for u in range(N_USERS):
            taste = u % len(TOPICS)
            for k in range(2):
                shown = rng.choice(live, 6, replace=False)
                liked = [s for s in shown if s % len(TOPICS) == taste] or [shown[0]]
                tokens = [f"{news_id(s)}-{int(s in liked[:2])}" for s in shown]
                hour = 8 + 5 * k + u % 4
                t = f"11/{9 + d}/2019 {(hour - 1) % 12 + 1}:{u:02d}:{10 + k:02d} {'AM' if hour < 12 else 'PM'}"
                hist = " ".join(news_id(int(h)) for h in (taste, taste + 6, taste + 12))
                rows.append("\t".join([str(imp), f"U{100 + u}", t, hist, " ".join(tokens)]))
                imp += 1
    (folder / "behaviors.tsv").write_text("\n".join(rows) + "\n")
    return folder
