"""The tables train through FBGEMM's fused kernels: DMP on one gloo process, forward, backward, and the
fused optimizer updating exactly the looked-up rows (and by the exact SGD amount)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch
import torch.distributed as dist

from semid.embeddings import (TableOptimizerConfig, build_kjt, build_token_cache, embedding_bag_configs, fused_params)
from semid.embeddings.hybrid import HybridConfig
from semid.embeddings.hashing import HashConfig
from semid.embeddings.ngram import NgramConfig
from semid.core.errors import SemidError
from semid.rqvae.sid_table import SidTable

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # the planner on a 1-rank CPU topology

K = 8
SIDS = SidTable(np.arange(6, dtype=np.int64) * 10,
                np.array([[0, 1], [1, 2], [2, 3], [3, 0], [1, 1], [7, 7]], np.int32), K, "rq-fused")
CFG = HybridConfig(name="h", parts=[NgramConfig(name="uni", n=1), HashConfig(name="id", rows=50)])
DIM = 4


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    store = dist.FileStore(str(tmp_path_factory.mktemp("gloo") / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _dmp(cache, params: dict):  # noqa: ANN001, ANN202
    from torchrec import EmbeddingBagCollection
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology

    cfgs = embedding_bag_configs(cache, DIM, ["candidate", "history"])
    ebc = EmbeddingBagCollection(tables=cfgs, device=torch.device("meta"))
    sharder = EmbeddingBagCollectionSharder(fused_params=params)
    # tiny tables would otherwise be planned data_parallel with dense gradients; insist on the fused kernel
    constraints = {c.name: ParameterConstraints(sharding_types=["table_wise"], compute_kernels=["fused"]) for c in cfgs}
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=1, compute_device="cpu"), constraints=constraints)
    plan = planner.collective_plan(ebc, [sharder], dist.GroupMember.WORLD)
    return DistributedModelParallel(ebc, device=torch.device("cpu"), sharders=[sharder], plan=plan)


def _tables(dmp) -> dict[str, torch.Tensor]:  # noqa: ANN001
    out = {}
    for k, v in dmp.state_dict().items():
        name = k.split(".")[-2]
        out[name] = (v.local_shards()[0].tensor if hasattr(v, "local_shards") else v).detach().clone()
    return out


def _batch(cache):  # noqa: ANN001, ANN202
    # candidates: items 0 and 1; history: sample 0 -> items 2, 3 (one SUM bag), sample 1 -> item 0
    return build_kjt(cache, {"candidate": np.array([0, 1])}, history=(np.array([0, 2, 3]), np.array([2, 3, 0])))


def _row_weight(kjt, table: str, rows: int) -> np.ndarray:  # noqa: ANN001
    """Lookups per row of ``table`` over every feature reading it (d loss / d row for loss = sum of SUM bags)."""
    total = np.zeros(rows)
    for key, jt in kjt.to_dict().items():
        if key.endswith(f"__{table}"):
            np.add.at(total, jt.values().numpy(), 1.0)
    return total


def test_fused_sgd_updates_exactly_the_looked_up_rows(group: None) -> None:
    cache = build_token_cache(CFG, SIDS, SIDS.item_id, None)
    dmp = _dmp(cache, fused_params("sgd", lr=0.5))
    before = _tables(dmp)
    kjt = _batch(cache)
    pooled = dmp(kjt)
    pooled = pooled.wait() if hasattr(pooled, "wait") else pooled
    d = pooled.to_dict()
    assert set(d) == set(kjt.keys())
    # forward: candidate item 0 = uni_0[0] + uni_1[1] + id[hash(0)]; history sample 0 = sum of items 2 and 3
    uni, hid = cache.jagged[:2], cache.jagged[2]

    def item(r: int) -> torch.Tensor:
        return before["uni_0"][uni[0].values[r]] + before["uni_1"][uni[1].values[r]] + before["id"][hid.values[r]]

    cand = d["candidate__uni_0"] + d["candidate__uni_1"] + d["candidate__id"]
    hist = d["history__uni_0"] + d["history__uni_1"] + d["history__id"]
    torch.testing.assert_close(cand[0], item(0))
    torch.testing.assert_close(hist[0], item(2) + item(3))
    torch.testing.assert_close(hist[1], item(0))

    sum(v.sum() for v in d.values()).backward()  # the fused kernel applies SGD inside backward
    assert all(p.grad is None for p in dmp.parameters())  # no (dense) gradient is ever materialised
    after = _tables(dmp)
    for t in cache.tables:
        w = _row_weight(kjt, t.name, t.num_rows)
        changed = (after[t.name] != before[t.name]).any(dim=1).numpy()
        assert (changed == (w > 0)).all(), t.name
        expect = before[t.name] - 0.5 * torch.from_numpy(w).float()[:, None]
        torch.testing.assert_close(after[t.name], expect)
    assert _row_weight(kjt, "uni_0", K)[5:].sum() == 0  # rows 5..7 untouched above: a real check


def test_rowwise_adagrad_default_touches_only_looked_up_rows(group: None) -> None:
    cache = build_token_cache(CFG, SIDS, SIDS.item_id, None)
    params = TableOptimizerConfig(lr=0.1).fused_params()
    assert str(params["optimizer"]) == "exact_row_wise_adagrad"
    dmp = _dmp(cache, params)
    before = _tables(dmp)
    kjt = _batch(cache)
    pooled = dmp(kjt)
    pooled = pooled.wait() if hasattr(pooled, "wait") else pooled
    sum(v.sum() for v in pooled.to_dict().values()).backward()
    after = _tables(dmp)
    for t in cache.tables:
        looked_up = _row_weight(kjt, t.name, t.num_rows) > 0
        changed = (after[t.name] != before[t.name]).any(dim=1).numpy()
        assert (changed == looked_up).all(), t.name
        assert looked_up.sum() < t.num_rows


def test_fused_params_validation() -> None:
    p = fused_params("adagrad", lr=0.2, eps=1e-6, weight_decay=1e-4)
    assert p["learning_rate"] == 0.2 and p["eps"] == 1e-6 and p["weight_decay"] == 1e-4 and "weight_decay_mode" in p
    with pytest.raises(SemidError, match="field 'optimizer': must be one of"):
        fused_params("lion")
    with pytest.raises(SemidError, match=r"field 'lr': must be a finite number > 0 \(got 0\)"):
        TableOptimizerConfig(lr=0)
