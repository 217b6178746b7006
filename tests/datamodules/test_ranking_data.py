"""Day-ordered data: no leakage into history, the CTR/1D slice, popularity buckets, rank shares."""
from __future__ import annotations

import numpy as np

from semid.datamodules.corpus import Corpus
from semid.datamodules.ranking import RankingDataConfig, RankingDataModule, UserHistory
from semid.datamodules.stats import HEAD, TAIL


def _clicks(corpus: Corpus):
    out = []
    for day, t in corpus.iter_days(["user_id", "item_id", "click"]):
        d = t.to_pydict()
        out += [(day, u, i) for u, i, c in zip(d["user_id"], d["item_id"], d["click"]) if c]
    return out


def test_history_holds_only_earlier_days_clicks_in_order(signal_corpus):
    corpus = Corpus(signal_corpus)
    items = corpus.read_items()
    clicks = _clicks(corpus)
    hist = UserHistory(corpus, items, max_len=7)
    for day in (0, 2, 3):
        users = np.array(sorted({u for _, u, _ in clicks}), np.int64)
        offsets, rows = hist.before(day).of(users)
        for k, u in enumerate(users):
            expected = [i for d, uu, i in clicks if uu == u and d < day][-7:]
            got = items.item_id[rows[offsets[k]:offsets[k + 1]]].tolist()
            assert got == expected, (day, u)
    # going back in time rebuilds instead of leaking later days
    offsets, rows = hist.before(1).of(np.array([clicks[0][1]]))
    assert items.item_id[rows].tolist() == [i for d, u, i in clicks if u == clicks[0][1] and d < 1][-7:]


def test_ctr_1d_slice_is_exactly_the_items_introduced_that_day(signal_corpus):
    dm = RankingDataModule(signal_corpus, RankingDataConfig())
    dm.setup()
    assert dm.train_days == [0, 1, 2] and dm.eval_day == 3
    frame = dm.day_frame(3)
    first = dm.items.first_day[frame.cand]
    assert np.array_equal(frame.is_new, first == 3)
    assert 0 < frame.is_new.sum() < len(frame)
    batch = dm.make_batch(frame, np.arange(len(frame)))
    assert int(batch.is_new.sum()) == int((first == 3).sum())


def test_popularity_buckets_follow_training_impressions(signal_corpus):
    dm = RankingDataModule(signal_corpus, RankingDataConfig(head_share=0.5, torso_share=0.3))
    dm.setup()
    b = dm.item_buckets(3)
    counts = sum(dm._counts(d) for d in (0, 1, 2))
    assert counts[b == HEAD].sum() >= 0.5 * counts.sum()
    assert counts[b == HEAD].min() >= counts[b != HEAD].max()
    assert (b[counts == 0] == TAIL).all()
    new = dm.items.first_day == 3
    assert (b[new] == TAIL).all()  # never trained on: tail by definition


def test_each_rank_reads_an_equal_disjoint_share(signal_corpus):
    corpus = Corpus(signal_corpus)
    full = corpus.read_day(1).to_pydict()
    a = corpus.read_day_share(1, 0, 2).to_pydict()
    b = corpus.read_day_share(1, 1, 2).to_pydict()
    n = len(full["item_id"])
    assert len(a["item_id"]) == len(b["item_id"]) == n // 2
    assert a["item_id"] + b["item_id"] == full["item_id"][: 2 * (n // 2)]
