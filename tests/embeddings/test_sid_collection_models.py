"""SemanticIdCollection inside models: TorchRec's own DLRM trains through it, and a SID module + EBC + MLP model
sharded by DistributedModelParallel on 2 gloo processes gives the losses of 1 process."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torchrec import EmbeddingBagCollection, KeyedJaggedTensor

from semid.embeddings import SemanticIdCollection, SpmConfig

L, K, N, B, STEPS = 4, 8, 300, 64, 6


def _items(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, K, (N, L))
    codes[:, 1] = (codes[:, 0] * 3 + rng.integers(0, 2, N)) % K  # co-occurring codes for SPM to merge
    return np.arange(N) + 500, codes, (200 / (1 + np.arange(N))).astype(np.int64) + 1


def _batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(candidate ids [B], history ids [B * 3], labels [B]); the label depends on the candidate's first code."""
    rng = np.random.default_rng(seed)
    ids, codes, _ = _items()
    out = []
    for _ in range(n):
        pick = rng.integers(0, N, B)
        out.append((torch.from_numpy(ids[pick]), torch.from_numpy(ids[rng.integers(0, N, B * 3)]),
                    torch.from_numpy((codes[pick, 0] < K // 2).astype(np.float32))))
    return out


def _kjt(cand: torch.Tensor, hist: torch.Tensor) -> KeyedJaggedTensor:
    b = len(cand)
    return KeyedJaggedTensor(keys=["candidate", "history"], values=torch.cat([cand, hist]),
                             lengths=torch.cat([torch.ones(b, dtype=torch.int32), torch.full((b,), 3, dtype=torch.int32)]))


class _Model(nn.Module):
    """The user's model: SID module in front of an ordinary EBC (on meta, for DMP to materialise), then an MLP."""

    def __init__(self, sid: SemanticIdCollection, dim: int = 8) -> None:
        super().__init__()
        self.sid = sid
        self.ebc = EmbeddingBagCollection(tables=sid.embedding_bag_configs(dim), device=torch.device("meta"))
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 16), nn.ReLU(), nn.Linear(16, 1))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.mlp.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
        pooled = self.ebc(self.sid(kjt)).to_dict()  # by key: the column order follows the sharding plan
        return self.mlp(torch.cat([pooled["candidate"], pooled["history"]], 1)).squeeze(1)


def _train(rank: int, world: int, store: str, module_path: str, out: str) -> None:
    import os

    import torch.distributed as dist
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    from semid.embeddings import fused_params
    from semid.rankers import ShardingConfig, TorchRecStrategy

    torch.set_num_threads(1)
    os.environ["LOCAL_WORLD_SIZE"] = str(world)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model = _Model(SemanticIdCollection.load(module_path))
        strategy = TorchRecStrategy(sharding=ShardingConfig(sharding_types=["table_wise"], local_lookup=False),
                                    fused_params=fused_params("rowwise_adagrad", 0.1), table_seed=0,
                                    parallel_devices=[torch.device("cpu")])
        dmp = strategy.shard(model)
        dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())),
                                      lambda params: torch.optim.SGD(params, lr=0.1))
        opt = CombinedOptimizer([dmp.fused_optimizer, dense])
        losses = []
        half = B // world
        for cand, hist, y in _batches(STEPS):
            sl = slice(rank * half, (rank + 1) * half)
            loss = nn.functional.binary_cross_entropy_with_logits(dmp(_kjt(cand[sl], hist[rank * half * 3:(rank + 1) * half * 3])), y[sl])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        stats = {k: int(v) for k, v in model.sid.stats().items()}
        Path(out).with_suffix(f".{rank}.json").write_text(json.dumps({"losses": losses, "stats": stats,
                                                                      "plan": strategy.plan_summary()}))
    finally:
        dist.destroy_process_group()


def _run(world: int, tmp: Path, module_path: Path, attempt: int = 0) -> list[dict]:
    out = tmp / f"world{world}-{attempt}"
    try:
        mp.start_processes(_train, args=(world, str(tmp / f"store{world}-{attempt}"), str(module_path), str(out)),
                           nprocs=world, join=True, start_method="spawn")
    except mp.ProcessExitedException as e:
        # One CI run (2026-12-08) lost rank 0 to "terminate called without an active exception" (SIGABRT) in the
        # first step of the 2-process gloo run; 8 reruns here passed. A native abort is retried once, with a
        # fresh store, and said so; a second abort, an exception or a wrong loss still fails the test.
        if e.signal_name != "SIGABRT" or attempt:
            raise
        warnings.warn(f"{world}-process gloo run: rank {e.error_index} aborted (SIGABRT); retried once")
        return _run(world, tmp, module_path, attempt + 1)
    return [json.loads(out.with_suffix(f".{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def spm_module(tmp_path_factory) -> Path:
    ids, codes, imp = _items()
    sid = SemanticIdCollection.from_sids(SpmConfig(vocab_size=40, num_threads=1), ids, codes, K, imp,
                                         features=["candidate", "history"], fallback_rows=8)
    return sid.save(tmp_path_factory.mktemp("sid") / "sid.pt")


@pytest.mark.distributed
def test_dmp_two_processes_give_the_losses_of_one(spm_module, tmp_path):
    one = _run(1, tmp_path, spm_module)
    two = _run(2, tmp_path, spm_module)
    assert two[0]["plan"] == {"spm": {"sharding_type": "table_wise", "compute_kernel": "fused", "ranks": [0]}}
    # each rank's loss is the mean over its half of the global batch: their mean is the 1-process loss, and the
    # averaged gradients (DDP for the MLP, FBGEMM's fused update for the table) keep it so step after step
    global_two = [(a + b) / 2 for a, b in zip(two[0]["losses"], two[1]["losses"])]
    np.testing.assert_allclose(global_two, one[0]["losses"], rtol=1e-5, atol=1e-6)
    assert one[0]["losses"][-1] < one[0]["losses"][0]  # it learns
    assert one[0]["stats"]["ids"] == STEPS * B * 4 and two[0]["stats"]["ids"] == STEPS * B * 2
    assert one[0]["stats"]["fallback"] == 0


def test_torchrec_dlrm_trains_through_the_module(spm_module):
    from torchrec.models.dlrm import DLRM

    sid = SemanticIdCollection.load(spm_module)
    torch.manual_seed(0)
    ebc = EmbeddingBagCollection(tables=sid.embedding_bag_configs(8))
    dlrm = DLRM(embedding_bag_collection=ebc, dense_in_features=3, dense_arch_layer_sizes=[16, 8],
                over_arch_layer_sizes=[16, 1])
    opt = torch.optim.Adam(dlrm.parameters(), lr=0.02)
    table = ebc.embedding_bags[sid.embedding_bag_configs(8)[0].name].weight
    before = table.detach().clone()
    losses = []
    batches = _batches(1)
    for step in range(40):
        cand, hist, y = batches[0]
        logits = dlrm(torch.zeros(len(cand), 3), sid(_kjt(cand, hist))).squeeze(1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    # the rows that moved are the pieces of the items DLRM saw
    seen = set(sid(_kjt(*batches[0][:2])).values().tolist())
    moved = set(torch.nonzero((table.detach() != before).any(1)).squeeze(1).tolist())
    assert moved == seen
