"""KeyedJaggedTensor building: keys, lengths, values and weights for single-item roles and history bags."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrec import EmbeddingBagCollection
from torchrec.modules.embedding_configs import PoolingType

from semid.embeddings import build_kjt, build_token_cache, embedding_bag_configs, feature_keys
from semid.embeddings.hashing import HashConfig
from semid.embeddings.hybrid import HybridConfig
from semid.embeddings.ngram import NgramConfig
from semid.embeddings.spm import SpmConfig
from semid.core.errors import SemidError
from semid.rqvae.sid_table import SidTable

K = 4
# item rows 0..3; bigram-offset layout gives 2 tokens per item, the hash part 1
SIDS = SidTable(np.array([5, 6, 7, 8]), np.array([[0, 1, 2, 3], [1, 1, 1, 1], [3, 2, 1, 0], [2, 2, 0, 0]], np.int32),
                K, "rq-kjt")
CFG = HybridConfig(name="h", parts=[NgramConfig(name="bi", n=2, layout="offset"), HashConfig(name="id", rows=5)])


@pytest.fixture(scope="module")
def cache():  # noqa: ANN201
    return build_token_cache(CFG, SIDS, SIDS.item_id, None)


def test_configs_share_tables_across_roles(cache) -> None:  # noqa: ANN001
    cfgs = embedding_bag_configs(cache, 8, ["candidate", "watch", "history"])
    assert [c.name for c in cfgs] == ["bi", "id"]
    assert [c.num_embeddings for c in cfgs] == [2 * K * K, 5]
    assert cfgs[0].feature_names == ["candidate__bi", "watch__bi", "history__bi"]
    assert all(c.pooling == PoolingType.SUM and c.embedding_dim == 8 for c in cfgs)
    assert feature_keys(cache, "watch") == ["watch__bi", "watch__id"]


def test_single_item_roles(cache) -> None:  # noqa: ANN001
    kjt = build_kjt(cache, {"candidate": np.array([0, 2]), "watch": np.array([-1, 3])})
    assert kjt.keys() == ["candidate__bi", "candidate__id", "watch__bi", "watch__id"]
    assert kjt.lengths().tolist() == [2, 2, 1, 1, 0, 2, 0, 1]
    bi = cache.jagged[0]
    d = kjt.to_dict()
    assert d["candidate__bi"].values().tolist() == [0 * 4 + 1, 16 + 2 * 4 + 3, 3 * 4 + 2, 16 + 1 * 4 + 0]
    assert d["watch__bi"].values().tolist() == bi.values[bi.offsets[3]:bi.offsets[4]].tolist()
    assert kjt.weights_or_none() is None


def test_history_bags_sum(cache) -> None:  # noqa: ANN001
    # sample 0: items 1, 2, 3; sample 1: none; sample 2: item 0 and a missing item
    offsets, items = np.array([0, 3, 3, 5]), np.array([1, 2, 3, 0, -1])
    kjt = build_kjt(cache, {"candidate": np.array([0, 1, 2])}, history=(offsets, items))
    assert kjt.keys() == ["candidate__bi", "candidate__id", "history__bi", "history__id"]
    d = kjt.to_dict()
    assert d["history__bi"].lengths().tolist() == [6, 0, 2]
    assert d["history__id"].lengths().tolist() == [3, 0, 1]
    bi = cache.jagged[0]
    assert d["history__bi"].values().tolist() == bi.values[2:8].tolist() + bi.values[0:2].tolist()
    assert int(kjt.lengths().sum()) == len(kjt.values())
    assert kjt.offsets().tolist()[-1] == len(kjt.values())


def test_bad_batches_are_refused(cache) -> None:  # noqa: ANN001
    with pytest.raises(SemidError, match="same batch size"):
        build_kjt(cache, {"candidate": np.array([0, 1]), "watch": np.array([0])})
    with pytest.raises(SemidError, match="cache rows"):
        build_kjt(cache, {"candidate": np.array([0, 4])})
    with pytest.raises(SemidError, match="history offsets"):
        build_kjt(cache, {"candidate": np.array([0])}, history=(np.array([0, 3]), np.array([1, 2])))


def test_spm_tokens_feed_a_kjt() -> None:
    imp = np.array([100, 1, 100, 1])
    spm = build_token_cache(SpmConfig(name="spm", vocab_size=20), SIDS, SIDS.item_id, imp)
    kjt = build_kjt(spm, {"candidate": np.arange(4)})
    assert kjt.lengths().tolist() == spm.lookups_per_item().tolist()
    assert kjt.values().max() < spm.tables[0].num_rows
