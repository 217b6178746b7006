"""Training items are impressed items, sampled in proportion to their impressions; held-out items never train."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from semid.datamodules.corpus import Corpus, CorpusWriter
from semid.rqvae.data import ImpressionWeightedBatches, impression_counts, split_items


def _corpus(path: Path) -> Corpus:
    ids = np.array([10, 20, 30, 40, 50])
    with CorpusWriter(path, dim=2) as w:
        w.write_items(ids, np.eye(5, 2, dtype=np.float32) + np.arange(5)[:, None], np.zeros(5, np.int32))
        # impressions: item 20 once, 30 three times, 40 six times (day 0: 20, 30; day 1: 30, 30, 40 x 6)
        for day, cands in ((0, [20, 30]), (1, [30, 30, 40, 40, 40, 40, 40, 40])):
            m = len(cands)
            w.write_impressions(day, {"day": np.full(m, day), "user_id": np.arange(m), "watch_item_id": -np.ones(m, int),
                                      "item_id": np.array(cands), "click": np.zeros(m), "engaged": np.zeros(m)})
        w.close({})
    return Corpus(path)


def test_counts_and_weights(tmp_path: Path) -> None:
    c = _corpus(tmp_path / "c")
    items = c.read_items()
    counts = impression_counts(c, items)
    assert counts.tolist() == [0, 1, 3, 6, 0]
    assert impression_counts(c, items, min_day=1).tolist() == [0, 0, 2, 6, 0]
    s = split_items(counts, holdout_items=0, seed=0)
    assert s.train_rows.tolist() == [1, 2, 3]
    assert np.allclose(s.train_weights, [0.1, 0.3, 0.6])


def test_sampling_follows_impressions_and_skips_holdout() -> None:
    counts = np.array([0, 1, 3, 6, 0, 10])
    s = split_items(counts, holdout_items=2, seed=3)
    assert not set(s.holdout_rows) & set(s.train_rows)
    emb = torch.arange(6, dtype=torch.float32)[:, None]
    ds = ImpressionWeightedBatches(emb, s.train_rows, s.train_weights, batch_size=4000, steps=6,
                                   first_batch_size=8000, seed=0)
    batches = list(ds)
    assert [len(b) for b in batches] == [8000] + [4000] * 5
    drawn = torch.cat(batches).long().view(-1).numpy()
    freq = np.bincount(drawn, minlength=6) / len(drawn)
    expected = np.zeros(6)
    expected[s.train_rows] = counts[s.train_rows] / counts[s.train_rows].sum()
    assert np.abs(freq - expected).max() < 0.01
    assert freq[s.holdout_rows].sum() == 0 and freq[[0, 4]].sum() == 0  # never held-out or unimpressed items


def test_a_resumed_stream_continues_with_the_same_batches() -> None:
    emb = torch.arange(50, dtype=torch.float32)[:, None]
    rows, weights = np.arange(50), np.full(50, 1 / 50)
    full = list(ImpressionWeightedBatches(emb, rows, weights, batch_size=7, steps=9, first_batch_size=20, seed=5))
    tail = ImpressionWeightedBatches(emb, rows, weights, batch_size=7, steps=9, first_batch_size=20, seed=5,
                                     start_step=4)
    assert len(tail) == 9  # the epoch's length; Lightning counts a resumed epoch from the checkpoint's step
    resumed = list(tail)
    assert len(resumed) == 5 and all(torch.equal(a, b) for a, b in zip(full[4:], resumed))
    assert not torch.equal(full[3], full[4])
