"""The world-size-1 fast path (rankers/local_lookup.py) against DMP's own forward: the real ranker with a
hash-like table (1 lookup), a bigram-like pair of tables and a bag table, Zipf ids with empty bags. Forward
outputs, tables and fused optimizer state must be bit-identical after training steps; anything the fast
path does not handle must go through DMP (never a different answer)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection

from semid.datamodules.batch import RankingBatch
from semid.rankers.config import load_rank_config
from semid.rankers.fit import fit
from semid.rankers.local_lookup import LocalLookup
from semid.rankers.model import RankerConfig
from semid.rankers.config import OptimConfig
from semid.rankers.module import RankerModule
from semid.rankers.strategy import ShardingConfig, TorchRecStrategy, sparse_lookup_paths
from tests.rankers.conftest import FAST

DIM = 16
ROLES = ("candidate", "watch", "history")
# (table, rows, bag): bag None = 1 lookup per item; (lo, hi) = a bag of lo..hi tokens (0 = empty)
TABLES = (("hash", 1000, None), ("bigram_0", 4096, None), ("bigram_1", 4096, None), ("spm", 300, (0, 4)))
B = 96


@pytest.fixture
def one_rank(monkeypatch: pytest.MonkeyPatch):
    """A 1-process gloo group (world size 1), torn down afterwards."""
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    dist.destroy_process_group()


def _tables(dim: int = DIM) -> list[EmbeddingBagConfig]:
    return [EmbeddingBagConfig(name=t, embedding_dim=dim, num_embeddings=rows,
                               feature_names=[f"{r}__{t}" for r in ROLES]) for t, rows, _ in TABLES]


def _zipf(n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    p = 1.0 / np.arange(1, rows + 1) ** 1.05
    return rng.permutation(rows)[rng.choice(rows, n, p=p / p.sum())]


def _batch(rng: np.random.Generator, day: int = 0) -> RankingBatch:
    """Keys role-major like semid.embeddings.build_kjt (so the kernels need them permuted): 20% of watch bags
    empty (no watched item), history bags of 0-5 items, spm bags of 0-4 tokens per item."""
    keys, values, lengths = [], [], []
    n_hist = rng.integers(0, 6, B)
    for role in ROLES:
        for t, rows, bag in TABLES:
            per_item = np.ones(B, np.int64) if bag is None else rng.integers(bag[0], bag[1] + 1, B)
            if role == "watch":
                per_item[rng.random(B) < 0.2] = 0
            ln = per_item * n_hist if role == "history" else per_item
            keys.append(f"{role}__{t}")
            lengths.append(ln)
            values.append(_zipf(int(ln.sum()), rows, rng))
    kjt = KeyedJaggedTensor(keys=keys, values=torch.from_numpy(np.concatenate(values)).long(),
                            lengths=torch.from_numpy(np.concatenate(lengths)).int())
    assert (kjt.lengths() == 0).any() and (kjt.lengths() > 1).any()
    return RankingBatch(kjt=kjt, content=None, context=torch.from_numpy(rng.random((B, 3), np.float32)),
                        labels=torch.from_numpy((rng.random((B, 2)) < 0.3).astype(np.float32)),
                        is_new=torch.zeros(B, dtype=torch.bool), popularity=torch.zeros(B, dtype=torch.int8),
                        history_items=torch.from_numpy(n_hist.astype(np.float32)), day=day)


def _sharded_ranker(local: bool, sharding_types: list[str] | None = None,
                    per_table: dict[str, list[str]] | None = None, dim: int = DIM):
    module = RankerModule(RankerConfig(embedding_dim=dim, hidden=[32, 16], use_history=True), OptimConfig(),
                          tables=_tables(dim), seed=3)
    strategy = TorchRecStrategy(sharding=ShardingConfig(sharding_types=sharding_types, per_table=per_table or {},
                                                        local_lookup=local),
                                fused_params=module.optim_cfg.table.fused_params(), table_seed=3,
                                parallel_devices=[torch.device("cpu")])
    dmp = strategy.shard(module)
    return module, dmp, module.configure_optimizers(), strategy


def _state(dmp: torch.nn.Module, opt) -> dict[str, torch.Tensor]:
    """Tables, dense parameters and both optimizers' state, as plain tensors."""
    def plain(v):
        return v.local_shards()[0].tensor if hasattr(v, "local_shards") else v

    out = {f"model.{k}": plain(v) for k, v in dmp.state_dict().items()}
    flat = {}

    def walk(prefix, x):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(f"{prefix}.{k}", v)
        elif hasattr(x, "local_shards") or isinstance(x, torch.Tensor):
            flat[prefix] = plain(x)

    walk("optim", opt.state_dict()["state"])
    out.update(flat)
    return out


CASES = {
    "planner": dict(),  # what `semid rank fit` gets at world size 1 (the planner's choice)
    "table_wise": dict(sharding_types=["table_wise"]),
    "row_wise": dict(sharding_types=["row_wise"]),
    "grid_shard": dict(sharding_types=["grid_shard"]),
    # one lookup per sharding type, the KeyedTensor assembled from several kernels
    "mixed": dict(per_table={"hash": ["table_wise"], "bigram_0": ["column_wise"], "bigram_1": ["row_wise"],
                             "spm": ["table_row_wise"]}),
    # dim 512: each table split into four 128-column shards, reassembled in column order
    "column_split": dict(sharding_types=["column_wise"], dim=512),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_trains_bit_identically_to_dmp(one_rank, case):
    kw = CASES[case]
    fast_module, fast, fast_opt, fast_strategy = _sharded_ranker(True, **kw)
    dmp_module, ref, ref_opt, ref_strategy = _sharded_ranker(False, **kw)
    assert fast_strategy.plan_summary() == ref_strategy.plan_summary()
    assert list(sparse_lookup_paths(fast).values()) == ["local"]
    assert list(sparse_lookup_paths(ref).values()) == ["dmp"]
    (sebc,) = [m for m in fast.modules() if isinstance(m, ShardedEmbeddingBagCollection)]
    if kw.get("dim") == 512:
        assert max(len(g.features) for g in sebc.local_lookup.groups) == 4 * len(ROLES) * len(TABLES)
    calls: list[int] = []
    sebc.local_lookup = _Counting(sebc.local_lookup, calls)
    (ref_sebc,) = [m for m in ref.modules() if isinstance(m, ShardedEmbeddingBagCollection)]

    start = {k: v.clone() for k, v in _state(ref, ref_opt).items() if ".embedding_bags." in k}
    rng = np.random.default_rng(0)
    for step in range(5):
        batch = _batch(rng)
        pooled_fast = sebc(batch.kjt)
        pooled_ref = ref_sebc(batch.kjt).wait()
        assert pooled_fast.keys() == pooled_ref.keys()
        assert torch.equal(pooled_fast.values(), pooled_ref.values()), step
        losses = []
        for module, dmp, opt in ((fast_module, fast, fast_opt), (dmp_module, ref, ref_opt)):
            logits = dmp(batch)
            loss = module._loss(logits, batch.labels)[0]
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append((logits.detach(), loss.detach()))
        assert torch.equal(losses[0][0], losses[1][0]) and torch.equal(losses[0][1], losses[1][1]), step
    assert len(calls) == 10  # the direct lookups above and those inside the ranker's forward

    a, b = _state(fast, fast_opt), _state(ref, ref_opt)
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different
    # and training did move the tables (the equality above is not two untouched copies)
    assert all(not torch.equal(start[k], a[k]) for k in start)

    fast.eval()
    ref.eval()
    with torch.no_grad():  # evaluation as Lightning runs it on a gloo group (no_grad, not inference_mode)
        batch = _batch(rng, day=1)
        assert torch.equal(fast(batch), ref(batch))
    assert len(calls) == 11


class _Counting:
    """Wraps a LocalLookup and records every call it answered (not fallen back)."""

    def __init__(self, inner: LocalLookup, calls: list[int]) -> None:
        self.inner, self.calls = inner, calls

    def is_current(self) -> bool:
        return self.inner.is_current()

    def __call__(self, kjt):
        out = self.inner(kjt)
        if out is not None:
            self.calls.append(1)
        return out


def test_unsupported_modules_and_inputs_go_through_dmp(one_rank):
    # data-parallel tables (dense kernel, DDP-wrapped lookup): DMP's forward
    module = RankerModule(RankerConfig(embedding_dim=DIM, hidden=[32, 16], use_history=True), OptimConfig(),
                          tables=_tables(), seed=3)
    strategy = TorchRecStrategy(sharding=ShardingConfig(sharding_types=["data_parallel"], compute_kernel="dense"),
                                fused_params=module.optim_cfg.table.fused_params(), parallel_devices=[torch.device("cpu")])
    assert list(sparse_lookup_paths(strategy.shard(module)).values()) == ["dmp"]

    # weighted tables: DMP's forward
    class _Weighted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ebc = EmbeddingBagCollection(tables=_tables(), is_weighted=True, device=torch.device("meta"))
            self.dense = torch.nn.Linear(1, 1)

    strategy = TorchRecStrategy(sharding=ShardingConfig(), fused_params=module.optim_cfg.table.fused_params(),
                                parallel_devices=[torch.device("cpu")])
    assert list(sparse_lookup_paths(strategy.shard(_Weighted())).values()) == ["dmp"]

    # per call: a weighted KJT or one without a table's feature falls back, and DMP answers or raises
    _, fast, _, _ = _sharded_ranker(True)
    (sebc,) = [m for m in fast.modules() if isinstance(m, ShardedEmbeddingBagCollection)]
    kjt = _batch(np.random.default_rng(1)).kjt
    assert sebc.local_lookup(kjt) is not None
    weighted = KeyedJaggedTensor(keys=kjt.keys(), values=kjt.values(), lengths=kjt.lengths(),
                                 weights=torch.ones(kjt.values().numel()))
    assert sebc.local_lookup(weighted) is None
    partial = kjt.permute([i for i, k in enumerate(kjt.keys()) if k != "watch__spm"])
    assert sebc.local_lookup(partial) is None
    with pytest.raises(Exception):
        sebc(partial).wait()


def test_kernels_replaced_by_a_reshard_are_picked_up(one_rank):
    """``update_shards`` (an in-place reshard) replaces the lookups and their FBGEMM kernels: the fast path
    must notice and read the new kernels, never the old ones."""
    _, fast, _, _ = _sharded_ranker(True)
    (sebc,) = [m for m in fast.modules() if isinstance(m, ShardedEmbeddingBagCollection)]
    kjt = _batch(np.random.default_rng(2)).kjt
    before = sebc(kjt).values().detach()
    old = sebc.local_lookup
    sebc._softcopy_lookups()  # what update_shards does: new lookups, new kernels, newly initialised rows
    sebc._create_lookups()
    assert not old.is_current()
    with torch.no_grad():
        out = sebc(kjt)
        ref = ShardedEmbeddingBagCollection.forward(sebc, kjt).wait()
    assert sebc.local_lookup is not old and sebc.local_lookup.is_current()
    assert torch.equal(out.values(), ref.values()) and not torch.equal(out.values(), before)


@pytest.mark.slow
def test_fit_uses_the_fast_path_and_matches_dmp(signal_corpus, tmp_path, monkeypatch):
    """`semid rank fit` on one process: the ranker trains and evaluates through the fast path, with the
    same metrics and the same checkpointed tables as with `sharding.local_lookup=false`."""
    from tests.rankers.test_fit import _tables as checkpoint_tables

    calls: list[int] = []
    inner = LocalLookup.__call__

    def counting(self, kjt):
        out = inner(self, kjt)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(LocalLookup, "__call__", counting)
    fast = fit(load_rank_config(representation="hash_8k", overrides=FAST), signal_corpus, tmp_path / "fast")
    n_fast = sum(calls)
    assert n_fast > 0 and all(calls)
    calls.clear()
    ref = fit(load_rank_config(representation="hash_8k", overrides=FAST + ["sharding.local_lookup=false"]), signal_corpus, tmp_path / "dmp")
    assert not calls
    assert fast["metrics"] == ref["metrics"] and fast["sharding_plan"] == ref["sharding_plan"]
    a = checkpoint_tables(tmp_path / "fast" / "checkpoints" / "last.ckpt")
    b = checkpoint_tables(tmp_path / "dmp" / "checkpoints" / "last.ckpt")
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
