"""SemanticIdCollection: its bags equal the token cache's bit for bit for every representation; state round
trips; unseen items from content (a real FrozenRqvae) or the fallback rows, counted; every bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torchrec import EmbeddingBagCollection, KeyedJaggedTensor

from semid.embeddings import (ContentDimError, DeviceMismatchError, HashConfig, IdDtypeError, NgramConfig,
                              PrefixNgramConfig, RandomSidConfig, SemanticIdCollection, SidSpaceError, SidTokenizer,
                              SpmConfig, UnknownFeatureError, UnknownItemError, build_kjt, build_token_cache, sid_table)

L, K, N = 4, 8, 400
REPRESENTATIONS = {
    "hash": HashConfig(rows=64),
    "unigram": NgramConfig(n=1, name="unigram"),
    "bigram": NgramConfig(n=2, name="bigram"),
    "trigram_offset": NgramConfig(n=3, name="tri", layout="offset", rows_per_group=100),  # hashed into budget
    "prefix": PrefixNgramConfig(rows_per_level=50),  # longer prefixes hashed into 50 rows
    "spm": SpmConfig(vocab_size=48, num_threads=1),  # < L*K + 1: rare symbols share <unk>
    "random_bigram": RandomSidConfig(name="rand", base=NgramConfig(n=2, name="rand")),
    "random_spm": RandomSidConfig(name="rspm", base=SpmConfig(name="rspm", vocab_size=64, num_threads=1)),
}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(N) * 7 + 1000)  # not 0..N-1, not sorted
    top = rng.integers(0, K, N)
    codes = np.stack([top] + [(top * (level + 3) + rng.integers(0, 3, N)) % K for level in range(1, L)], 1)
    impressions = (1000 / (1 + np.arange(N)) ** 1.1).astype(np.int64)  # Zipf
    return {"ids": ids, "codes": codes.astype(np.int32), "impressions": impressions}


def _batch(data: dict[str, np.ndarray], seed: int = 1, b: int = 32) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Item ids per sample: candidate, watch (-1 = none), and a history of 0..5 items."""
    rng = np.random.default_rng(seed)
    ids = data["ids"]
    cand = rng.choice(ids, b)
    watch = np.where(rng.random(b) < 0.2, -1, rng.choice(ids, b))
    hist_len = rng.integers(0, 6, b)
    hist = rng.choice(ids, int(hist_len.sum()))
    return {"candidate": cand, "watch": watch, "history": hist}, hist_len


def _kjt(items: dict[str, np.ndarray], hist_len: np.ndarray) -> KeyedJaggedTensor:
    b = len(items["candidate"])
    lengths = [np.ones(b, np.int64), np.ones(b, np.int64), hist_len]
    return KeyedJaggedTensor(keys=["candidate", "watch", "history"],
                             values=torch.from_numpy(np.concatenate(list(items.values())).astype(np.int64)),
                             lengths=torch.from_numpy(np.concatenate(lengths).astype(np.int32)))


def _cache_kjt(cache, items, hist_len) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    rows = {r: cache.rows_of(items[r]) for r in ("candidate", "watch")}
    offsets = np.concatenate([[0], np.cumsum(hist_len)])
    kjt = build_kjt(cache, rows, history=(offsets, cache.rows_of(items["history"])))
    return {k: (v.values(), v.lengths()) for k, v in kjt.to_dict().items()}


def _cache(name: str, data):
    table = sid_table(data["ids"], data["codes"], K)
    return build_token_cache(REPRESENTATIONS[name], table, data["ids"], data["impressions"])


@pytest.mark.parametrize("name", list(REPRESENTATIONS))
def test_table_pooling_bags_equal_token_cache_bags_bit_for_bit(name, data):
    cache = _cache(name, data)
    items, hist_len = _batch(data)
    expected = _cache_kjt(cache, items, hist_len)
    # the module fitted on its own from the same arrays, and the module over the cache itself
    fitted = SemanticIdCollection.from_sids(REPRESENTATIONS[name], data["ids"], data["codes"], K, data["impressions"],
                                            features=["candidate", "watch", "history"], pooling="table",
                                            fallback_rows=0)
    over_cache = SemanticIdCollection.from_token_cache(cache, features=["candidate", "watch", "history"],
                                                      pooling="table", fallback_rows=0)
    for module in (fitted, over_cache):
        assert [(c.name, c.num_embeddings) for c in module.embedding_bag_configs(4)] == \
            [(t.name, t.num_rows) for t in cache.tables]
        out = module(_kjt(items, hist_len)).to_dict()
        assert sorted(out) == sorted(expected)
        for key, (values, lengths) in expected.items():
            assert torch.equal(out[key].values(), values), key
            assert torch.equal(out[key].lengths().long(), lengths.long()), key
        assert int(module.stats()["unseen"]) == 0 and int(module.stats()["ids"]) == (items["watch"] >= 0).sum() + \
            len(items["candidate"]) + len(items["history"])


def test_sparse_ids_are_found_by_binary_search_with_the_same_bags(data):
    dense = SemanticIdCollection.from_sids(NgramConfig(n=2), data["ids"], data["codes"], K, features=["c"])
    sparse_ids = data["ids"] * 10**12 + 3  # a span far above 4N: no lookup table, binary search
    sparse = SemanticIdCollection.from_sids(NgramConfig(n=2), sparse_ids, data["codes"], K, features=["c"])
    assert dense.row_lookup.numel() > 0 and sparse.row_lookup.numel() == 0
    pick = np.random.default_rng(0).integers(0, N, 50)
    a = dense(KeyedJaggedTensor.from_lengths_sync(["c"], torch.from_numpy(data["ids"][pick]), torch.ones(50, dtype=torch.int32)))
    b = sparse(KeyedJaggedTensor.from_lengths_sync(["c"], torch.from_numpy(sparse_ids[pick]), torch.ones(50, dtype=torch.int32)))
    assert torch.equal(a.values(), b.values()) and torch.equal(a.lengths(), b.lengths())
    # ids beside the known ones (below, between, above) are unseen on both paths
    for m, near in ((dense, [int(data["ids"].min()) - 1, 1001, int(data["ids"].max()) + 1]),
                    (sparse, [int(sparse_ids.min()) - 1, int(sparse_ids.min()) + 1, int(sparse_ids.max()) + 1])):
        m.reset_stats()
        m(KeyedJaggedTensor.from_lengths_sync(["c"], torch.tensor(near), torch.ones(3, dtype=torch.int32)))
        assert int(m.stats()["unseen"]) == 3 and int(m.stats()["fallback"]) == 3


@pytest.mark.parametrize("name", ["unigram", "prefix", "spm", "hash"])
def test_item_pooling_bag_is_every_table_offset_into_one(name, data):
    cache = _cache(name, data)
    module = SemanticIdCollection.from_token_cache(cache, features=["candidate", "watch", "history"],
                                                   fallback_rows=3)
    starts = np.concatenate([[0], np.cumsum([t.num_rows for t in cache.tables])])
    [cfg] = module.embedding_bag_configs(4)
    assert cfg.num_embeddings == starts[-1] + 3 and cfg.feature_names == ["candidate", "watch", "history"]
    items, hist_len = _batch(data, seed=2)
    out = module(_kjt(items, hist_len)).to_dict()

    def bag(ids: np.ndarray) -> list[int]:  # by hand: each item's pieces of table 0, 1, ... offset by its start
        pieces = []
        for r in cache.rows_of(ids):
            if r >= 0:
                for t, j in enumerate(cache.jagged):
                    pieces += (j.values[j.offsets[r]:j.offsets[r + 1]] + starts[t]).tolist()
        return pieces

    hist_off = np.concatenate([[0], np.cumsum(hist_len)])
    for key in ("candidate", "watch", "history"):
        got = out[key]
        per_sample = torch.split(got.values(), got.lengths().tolist())
        for i, v in enumerate(per_sample):
            ids = items[key][i:i + 1] if key != "history" else items["history"][hist_off[i]:hist_off[i + 1]]
            assert v.tolist() == bag(ids), (key, i)
    # the sum of one bag over the joint table equals the sum of the per-table bags (the paper's item embedding)
    ebc_item = EmbeddingBagCollection(tables=module.embedding_bag_configs(4))
    table = SemanticIdCollection.from_token_cache(cache, features=["candidate", "watch", "history"], pooling="table",
                                                  fallback_rows=3)
    ebc_table = EmbeddingBagCollection(tables=table.embedding_bag_configs(4))
    weight = ebc_item.embedding_bags[cfg.name].weight
    with torch.no_grad():
        for t, c in enumerate(table.embedding_bag_configs(4)):
            ebc_table.embedding_bags[c.name].weight.copy_(weight[starts[t]:starts[t] + c.num_embeddings])
    a = ebc_item(module(_kjt(items, hist_len))).to_dict()
    b = ebc_table(table(_kjt(items, hist_len))).to_dict()
    for key in ("candidate", "watch", "history"):
        summed = sum(b[k] for k in table.feature_names(key))
        torch.testing.assert_close(a[key], summed)


def test_state_dict_torch_save_and_file_round_trip(data, tmp_path):
    spm = SemanticIdCollection.from_sids(SpmConfig(vocab_size=48, num_threads=1), data["ids"], data["codes"], K,
                                         data["impressions"], features=["candidate", "watch", "history"])
    items, hist_len = _batch(data, seed=3)
    ref = spm(_kjt(items, hist_len))
    sd = spm.state_dict()
    assert {"item_id", "offsets", "values", "tokenizer_state"} <= set(sd) and "n_ids" not in sd

    # into a module of another representation and size: the buffers are resized, the tokenizer rebuilt
    other = SemanticIdCollection.from_sids(HashConfig(rows=5), data["ids"][:10], features=["candidate", "watch",
                                                                                          "history"])
    other.load_state_dict(sd)
    assert other.tokenizer.kind == "spm" and other.embedding_bag_configs(4)[0].num_embeddings == \
        spm.embedding_bag_configs(4)[0].num_embeddings
    buf = io.BytesIO()
    torch.save(spm, buf)
    buf.seek(0)
    whole = torch.load(buf, weights_only=False)
    loaded = SemanticIdCollection.load(spm.save(tmp_path / "sid.pt"))
    for m in (other, whole, loaded):
        out = m(_kjt(items, hist_len))
        assert torch.equal(out.values(), ref.values()) and torch.equal(out.lengths(), ref.lengths())
        # the restored tokenizer tokenises new items as the original does
        assert m.tokenizer.tokenize([1], [[1, 2, 3, 4]])[0].values.tolist() == \
            spm.tokenizer.tokenize([1], [[1, 2, 3, 4]])[0].values.tolist()
    tok_path = spm.tokenizer.save(tmp_path / "tok.npz")
    assert SidTokenizer.load(tok_path).fingerprint == spm.tokenizer.fingerprint


def _frozen(dim: int):
    """A real frozen quantizer (residual k-means weights, as `semid sids train` exports them)."""
    from semid.rqvae.config import RqvaeConfig
    from semid.rqvae.frozen import FrozenRqvae, build_model

    cfg = RqvaeConfig(quantizer="rqkmeans", levels=L, codebook_size=K, input_dim=dim)
    model = build_model(cfg)
    with torch.no_grad():
        model.codebooks.copy_(torch.randn(model.codebooks.shape, generator=torch.Generator().manual_seed(0)))
    return FrozenRqvae(model.double().eval(), cfg, "test-quantizer", "test-corpus", [])


def test_unseen_items_from_content_through_a_frozen_quantizer(data):
    dim = 6
    q = _frozen(dim)
    rng = np.random.default_rng(5)
    content = rng.normal(size=(N, dim))
    codes = q.encode(content)
    known = N - 20  # the last 20 items are new
    module = SemanticIdCollection.from_sids(SpmConfig(vocab_size=48, num_threads=1), data["ids"][:known],
                                            codes[:known], K, data["impressions"][:known],
                                            features=["candidate", "history"], quantizer=q, fallback_rows=16)
    new_ids, new_content = data["ids"][known:], content[known:]
    # candidate: 3 new items with content; history: a new item with content, an old one, a new one without
    cand = np.array([new_ids[0], data["ids"][0], new_ids[1]])
    hist = np.array([new_ids[2], data["ids"][1], new_ids[3]])
    kjt = KeyedJaggedTensor.from_lengths_sync(["candidate", "history"],
                                              torch.from_numpy(np.concatenate([cand, hist])),
                                              torch.tensor([1, 1, 1, 2, 0, 1]))
    c_cand = torch.from_numpy(np.stack([new_content[0], np.full(dim, 9.0), new_content[1]])).float()
    out = module(kjt, content={"candidate": c_cand}).to_dict()
    want = module.tokenizer.tokenize(cand[[0, 2]], codes[known:][[0, 1]])[0]
    bags = torch.split(out["candidate"].values(), out["candidate"].lengths().tolist())
    assert bags[0].tolist() == want.values[want.offsets[0]:want.offsets[1]].tolist()
    assert bags[2].tolist() == want.values[want.offsets[1]:want.offsets[2]].tolist()
    assert bags[1].tolist() == module.rows_of([data["ids"][0]])["spm"][0]  # a known item ignores its content row
    # history came without content: both new items get one fallback row each, never an empty bag
    hist_bags = torch.split(out["history"].values(), out["history"].lengths().tolist())
    fb0 = module.table_rows[0] - 16
    assert len(hist_bags[0]) == 1 + len(module.rows_of([data["ids"][1]])["spm"][0]) and hist_bags[0][0] >= fb0
    assert hist_bags[2].numel() == 1 and hist_bags[2][0] >= fb0
    assert {k: int(v) for k, v in module.stats().items()} == {"ids": 6, "unseen": 4, "content": 2, "fallback": 2}
    # rows_of answers the same for a new item given its content, and counts nothing
    assert module.rows_of([new_ids[1]], content=new_content[1:2])["spm"][0] == bags[2].tolist()
    assert int(module.stats()["ids"]) == 6
    module.reset_stats()
    assert int(module.stats()["unseen"]) == 0


def test_unseen_items_without_fallback_rows_are_refused(data):
    module = SemanticIdCollection.from_sids(NgramConfig(n=2), data["ids"], data["codes"], K, features=["c"],
                                            fallback_rows=0)
    kjt = KeyedJaggedTensor.from_lengths_sync(["c"], torch.tensor([5]), torch.tensor([1]))
    with pytest.raises(UnknownItemError, match="item 5 is not in the mapping.*fallback_rows > 0"):
        module(kjt)
    # hashing and random SIDs need nothing but the id: no fallback, no error
    for cfg in (HashConfig(rows=64), RandomSidConfig(base=NgramConfig(n=2))):
        m = SemanticIdCollection.from_sids(cfg, data["ids"], data["codes"], K, features=["c"], fallback_rows=0)
        assert m(kjt).values().numel() >= 1 and int(m.stats()["fallback"]) == 0 and int(m.stats()["unseen"]) == 1
        full = SemanticIdCollection.from_sids(cfg, np.append(data["ids"], 5), np.vstack([data["codes"], [[0] * L]]),
                                              K, features=["c"])
        if cfg.kind == "hash":
            assert torch.equal(m(kjt).values(), full(kjt).values())


def test_bad_inputs_each_raise_one_clear_line(data):
    m = SemanticIdCollection.from_sids(NgramConfig(n=2), data["ids"], data["codes"], K, features=["candidate"])
    ids = torch.tensor([int(data["ids"][0])])
    one = torch.tensor([1])
    with pytest.raises(UnknownFeatureError, match="KJT key 'user' is not configured.*features="):
        m(KeyedJaggedTensor.from_lengths_sync(["user"], ids, one))
    with pytest.raises(IdDtypeError, match="ids have dtype torch.float32; pass int64"):
        m(KeyedJaggedTensor(keys=["candidate"], values=ids.float(), lengths=one))
    with pytest.raises(IdDtypeError, match="argument 'item_ids' has dtype float64"):
        SemanticIdCollection.from_sids(HashConfig(), np.array([1.0, 2.0]), features=["c"])
    with pytest.raises(SidSpaceError, match="argument 'sids' has shape .*L=4 levels"):
        SemanticIdCollection.from_tokenizer(m.tokenizer, [1, 2], np.zeros((2, 5), np.int32), features=["c"])
    with pytest.raises(SidSpaceError, match="SID table of L=4, K=16 but the tokenizer was fitted on L=4, K=8"):
        SemanticIdCollection.from_tokenizer(m.tokenizer, [1, 2], sid_table([1, 2], np.zeros((2, L), np.int32), 16),
                                            features=["c"])
    with pytest.raises(SidSpaceError, match=r"outside \[0, K=8\)"):
        SemanticIdCollection.from_tokenizer(m.tokenizer, [1, 2], np.full((2, L), K), features=["c"])
    with pytest.raises(SidSpaceError, match="argument 'quantizer' has codebook_size=16"):
        m.set_quantizer(_frozen(6).__class__(*_quantizer_with(k=16)))
    with pytest.raises(SidSpaceError, match=r"argument 'quantizer\(content\)' has shape \(1, 3\)"):
        m.set_quantizer(lambda x: torch.zeros(len(x), 3, dtype=torch.long), content_dim=2)
        m(KeyedJaggedTensor.from_lengths_sync(["candidate"], torch.tensor([5]), one),
          content={"candidate": torch.zeros(1, 2)})
    m.set_quantizer(_frozen(6))
    with pytest.raises(ContentDimError, match=r"argument 'content\['candidate'\]' has shape \(1, 7\); expected \[1, 6\]"):
        m(KeyedJaggedTensor.from_lengths_sync(["candidate"], torch.tensor([5]), one),
          content={"candidate": torch.zeros(1, 7)})
    with pytest.raises(ContentDimError, match="argument 'content_dim' is 3 but the quantizer takes dimension 6"):
        m.set_quantizer(_frozen(6), content_dim=3)
    with pytest.raises(DeviceMismatchError, match=r"is on cpu but the module's buffers are on meta.*module.to\('cpu'\)"):
        m.to("meta")(KeyedJaggedTensor.from_lengths_sync(["candidate"], ids, one))
    with pytest.raises(Exception, match="argument 'pooling' is 'bag'"):
        SemanticIdCollection.from_sids(HashConfig(), [1], features=["c"], pooling="bag")
    with pytest.raises(Exception, match="argument 'features' must list distinct"):
        SemanticIdCollection.from_sids(HashConfig(), [1], features=["c", "c"])
    with pytest.raises(Exception, match="pass impressions="):
        SemanticIdCollection.from_sids(SpmConfig(), data["ids"], data["codes"], K, features=["c"])


def _quantizer_with(k: int) -> tuple:
    q = _frozen(6)
    from dataclasses import replace

    cfg = replace(q.config, model=replace(q.config.model, codebook_size=k))
    return (q.model, cfg, q.fingerprint, q.corpus_fingerprint, [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bags_equal_cpu_bags(data):
    module = SemanticIdCollection.from_sids(SpmConfig(vocab_size=48, num_threads=1), data["ids"][:-5],
                                            data["codes"][:-5], K, data["impressions"][:-5],
                                            features=["candidate", "watch", "history"], fallback_rows=4)
    items, hist_len = _batch(data, seed=4)
    items["history"][:3] = data["ids"][-3:]  # unseen: fallback rows
    kjt = _kjt(items, hist_len)
    ref = module(kjt)
    gpu = module.to("cuda")
    out = gpu(kjt.to(torch.device("cuda")))
    assert out.values().is_cuda and torch.equal(out.values().cpu(), ref.values())
    assert torch.equal(out.lengths().cpu(), ref.lengths())
    assert int(gpu.stats()["fallback"]) == 2 * int((items["history"][:3] >= 0).sum())
