"""Model-level checks on real TorchRec modules (unsharded, forward only)."""
from __future__ import annotations

import numpy as np
import torch

from semid.datamodules.batch import RankingBatch
from semid.embeddings import build_kjt, build_token_cache, embedding_bag_configs
from semid.rankers.model import MultitaskRanker, RankerConfig


def test_history_mean_is_the_mean_of_item_representations():
    ids = np.arange(10, 16, dtype=np.int64)
    cache = build_token_cache("hash_8k", None, ids, None)
    cfg = RankerConfig(embedding_dim=4, use_history=True, history_pooling="mean")
    model = MultitaskRanker(cfg, tables=embedding_bag_configs(cache, 4, ["candidate", "watch", "history"]),
                            device="cpu")
    rows = cache.rows_of(ids)
    hist_offsets = np.array([0, 3, 3])  # sample 0: three history items, sample 1: none
    kjt = build_kjt(cache, {"candidate": rows[:2], "watch": np.array([rows[3], -1])},
                    history=(hist_offsets, rows[[2, 4, 5]]))
    batch = RankingBatch(kjt=kjt, content=None, context=torch.zeros(2, 3), labels=torch.zeros(2, 2),
                         is_new=torch.zeros(2, dtype=torch.bool), popularity=torch.zeros(2, dtype=torch.int8),
                         history_items=torch.tensor([3.0, 0.0]), day=0)
    v = model.role_vectors(batch)
    table = model.ebc.embedding_bags["hash_8k"].weight.detach()
    tok = lambda r: table[cache.jagged[0].values[cache.jagged[0].offsets[r]]]  # noqa: E731  one token per item
    expected = (tok(rows[2]) + tok(rows[4]) + tok(rows[5])) / 3
    assert torch.allclose(v["history"][0], expected, atol=1e-6)
    assert torch.equal(v["history"][1], torch.zeros(4))
    assert torch.equal(v["watch"][1], torch.zeros(4))  # missing watch item -> empty bag
    assert torch.allclose(v["candidate"][0], tok(rows[0]), atol=1e-6)
