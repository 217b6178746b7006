"""Property: for any click log, an impression's history holds exactly the user's last clicks from
earlier days, in order, and never an item clicked on the impression's day or later."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semid.datamodules.corpus import Corpus, CorpusWriter
from semid.datamodules.ranking import UserHistory

impression = st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 7), st.booleans())  # day, user, item, click


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=st.lists(impression, min_size=1, max_size=60), max_len=st.integers(1, 5))
def test_history_never_contains_same_day_or_later_clicks(log, max_len):
    days = sorted({d for d, *_ in log})
    dense = {d: i for i, d in enumerate(days)}  # days must be consecutive
    log = sorted(((dense[d], u, i, c) for d, u, i, c in log), key=lambda r: r[0])  # chronological, stable
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "c"
        with CorpusWriter(out, 2) as w:
            w.write_items(np.arange(8) + 100, np.ones((8, 2)), np.zeros(8, np.int32))
            for d in range(len(days)):
                rows = [r for r in log if r[0] == d]
                w.write_impressions(d, {"day": np.full(len(rows), d), "user_id": np.array([r[1] for r in rows]),
                                        "watch_item_id": np.full(len(rows), -1),
                                        "item_id": np.array([r[2] for r in rows]) + 100,
                                        "click": np.array([r[3] for r in rows], np.int8),
                                        "engaged": np.zeros(len(rows))})
            w.close({})
        corpus = Corpus(out)
        items = corpus.read_items()
        hist = UserHistory(corpus, items, max_len)
        users = np.arange(5, dtype=np.int64)
        for day in range(len(days)):
            offsets, rows = hist.before(day).of(users)
            for u in users:
                expected = [i + 100 for d, uu, i, c in log if uu == u and c and d < day][-max_len:]
                got = items.item_id[rows[offsets[u]:offsets[u + 1]]].tolist()
                assert got == expected
