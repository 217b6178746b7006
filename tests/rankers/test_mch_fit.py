"""Managed-collision tables (``kind: mch``) in a real ``semid rank fit``: sharded row-wise by DMP with the fused
kernel on CPU, every item seen in training holding a row of its own, and a ``kill -9`` mid-day whose rerun
restores the eviction state from the checkpoint and ends bit-identical to an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchrec import EmbeddingBagConfig, KeyedJaggedTensor

from semid.datamodules.batch import RankingBatch
from semid.datamodules.corpus import Corpus
from semid.embeddings.mch import MchConfig, mch_ids
from semid.rankers.config import OptimConfig
from semid.rankers.local_lookup import LocalShardedManagedCollisionEBC
from semid.rankers.model import RankerConfig
from semid.rankers.module import RankerModule
from semid.rankers.strategy import ShardingConfig, TorchRecStrategy, init_tables, sparse_lookup_paths
from semid.cli import main
from tests.rankers.conftest import FAST
from tests.rankers.test_local_lookup import one_rank  # noqa: F401 - the 1-process gloo group fixture

EMPTY = torch.iinfo(torch.int64).max  # MCH's marker of a slot no id holds
MCH = "_managed_collision_modules"


def _state(ckpt: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's model state (tables, managed-collision buffers, dense layers) as full tensors."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = ckpt.parent / f"{ckpt.name}-{os.getpid()}.pt"
    dcp_to_torch_save(ckpt, out)
    state = torch.load(out, weights_only=False)["model"]
    out.unlink()
    return state


def _buffers(state: dict[str, torch.Tensor], table: str) -> dict[str, torch.Tensor]:
    prefix = f"{MCH}.{table}."
    return {k.split(prefix)[1]: v for k, v in state.items() if prefix in k}


def _seen_items(corpus: Path, days: list[int]) -> np.ndarray:
    c = Corpus(corpus)
    ids = [np.concatenate([t.column(col).drop_null().to_numpy() for col in ("item_id", "watch_item_id")])
           for t in (c.read_day(d) for d in days)]
    return np.unique(np.concatenate(ids))


def test_rank_fit_mch_8k_gives_every_seen_item_a_row_of_its_own(signal_corpus, tmp_path, capsys):
    out = tmp_path / "mch"
    args = ["rank", "fit", "--representation", "mch_8k", "--corpus", str(signal_corpus), "--out", str(out)]
    assert main(args + [x for o in FAST for x in ("--set", o)]) == 0
    assert "mch_8k (without_history)" in capsys.readouterr().out
    r = json.loads((out / "results.json").read_text())
    assert r["representation_kind"] == "mch" and r["table_rows"] == {"mch_8k": 8192}
    # TorchRec's sharded managed-collision collection, row-wise on the fused kernel
    assert r["sharding_plan"]["mch_8k"] == {"sharding_type": "row_wise", "compute_kernel": "fused", "ranks": [0]}
    assert r["metrics"]["ctr"]["overall"]["auc"] > 0.62  # it learns the planted signal (hash_8k: > 0.62 too)

    m = _buffers(_state(out / "checkpoints" / "last.ckpt"), "mch_8k")
    held = m["_mch_sorted_raw_ids"] != EMPTY
    seen = _seen_items(signal_corpus, r["train_days"])
    # every candidate and watch item of the training days got a fresh row (8,191 rows hold them all: no
    # eviction), each its own, none the shared miss row 8191; nothing else holds a row
    assert sorted(m["_mch_sorted_raw_ids"][held].tolist()) == sorted(mch_ids(seen, 0).tolist())
    rows = m["_mch_remapped_ids_mapping"][held]
    assert len(set(rows.tolist())) == len(seen) and int(rows.max()) < 8191
    # LFU counts: one per occurrence of the item as candidate or watch item in training
    assert int(m["_mch_counts"][held].sum()) == sum(
        int(Corpus(signal_corpus).read_day(d).column(c).drop_null().__len__())
        for d in r["train_days"] for c in ("item_id", "watch_item_id"))
    # the evaluation day's new items were never seen in training: no row (they score through the miss row)
    c = Corpus(signal_corpus)
    items = c.read_items(columns=["item_id", "embedding", "first_day"])
    new = items.item_id[items.first_day == r["eval_day"]]
    assert len(new) and not np.isin(mch_ids(new, 0), m["_mch_sorted_raw_ids"].numpy()).any()


@pytest.mark.parametrize("eviction", ["lfu", "lru"])
def test_kill_9_mid_day_restores_the_eviction_state_and_ends_bit_identically(signal_corpus, tmp_path, eviction):
    """A 96-row table over ~1,000 items with user history: ids are evicted on every step. The run killed in
    the middle of its second day resumes from the first day's checkpoint, whose MCH buffers (sorted raw ids,
    rows, counts or last-access step, step counter) hold that day's eviction state, and ends with the
    uninterrupted run's metrics, tables, MCH buffers and dense weights, bit for bit."""
    rep = tmp_path / f"mch_{eviction}.yaml"
    rep.write_text(f"kind: mch\nrows: 96\neviction: {eviction}\n")

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", str(rep), "--corpus",
                str(signal_corpus), "--out", str(out)] + \
            [x for o in FAST + ["ranker.use_history=true"] for x in ("--set", o)]

    subprocess.run(cmd(tmp_path / "full"), check=True, capture_output=True, timeout=600)
    steps_per_day = -(-Corpus(signal_corpus).read_day(0).num_rows // 256)
    env = {**os.environ, "SEMID_TEST_KILL_AT_STEP": str(steps_per_day * 3 // 2)}
    killed = subprocess.run(cmd(tmp_path / "killed"), capture_output=True, timeout=600, env=env)
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "results.json").exists()

    day1 = _buffers(_state(tmp_path / "killed" / "checkpoints" / "last.ckpt"), rep.stem)
    assert int(day1["_current_iter_tensor"]) == steps_per_day  # one eviction per step of the first day
    # full: 95 ids hold a row (the last slot is TorchRec's miss row, never given out), so new ids now evict
    assert int((day1["_mch_sorted_raw_ids"] != EMPTY).sum()) == 95

    rerun = subprocess.run(cmd(tmp_path / "killed"), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"saved at the end of a day, step {steps_per_day})" in rerun.stdout, rerun.stdout
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("full", "killed"))
    assert a["metrics"] == b["metrics"] and a["metrics_by_day"] == b["metrics_by_day"]
    sa, sb = (_state(tmp_path / d / "checkpoints" / "last.ckpt") for d in ("full", "killed"))
    assert sa.keys() == sb.keys()
    assert not [k for k in sa if not torch.equal(sa[k], sb[k])]
    end = _buffers(sa, rep.stem)
    steps = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt" / "lightning_state.pt",
                       weights_only=False)["global_step"]
    assert int(end["_current_iter_tensor"]) == steps and set(end) >= {
        "_mch_sorted_raw_ids", "_mch_remapped_ids_mapping", {"lfu": "_mch_counts", "lru": "_mch_last_access_iter"}[eviction]}
    # the eviction state moved after the checkpoint the rerun resumed from (the equality is not of idle buffers)
    assert not torch.equal(end["_mch_sorted_raw_ids"], day1["_mch_sorted_raw_ids"])


def test_two_processes_shard_the_managed_table_row_wise_on_gloo(signal_corpus, tmp_path):
    """DMP shards the managed-collision table over 2 CPU processes (gloo): each rank manages the ids of its
    half of MCH's input space in its 4,096 rows. A checkpoint of 2 ranks is refused under 1 (each rank's
    buffers hold its own block) and resumes under 2."""
    out = tmp_path / "two"

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", "mch_8k",
                               "--corpus", str(signal_corpus), "--out", str(out), *extra]
                              + [x for o in FAST for x in ("--set", o)], capture_output=True, text=True, timeout=600)

    first = run("--max-train-days", "2", "--set", "trainer.devices=2")
    assert first.returncode == 0, first.stderr[-2000:]
    one = run()  # the same run resumed by one process
    err = one.stderr.strip().splitlines()
    assert one.returncode == 2 and len(err) == 1 and "checkpointed by 2 process(es)" in err[0] \
        and "trainer.devices=2" in err[0], one.stderr[-2000:]
    done = run("--set", "trainer.devices=2")
    assert done.returncode == 0 and "resuming" in done.stdout, done.stderr[-2000:]
    r = json.loads((out / "results.json").read_text())
    assert r["world_size"] == 2 and r["sharding_plan"]["mch_8k"]["sharding_type"] == "row_wise"
    assert r["sharding_plan"]["mch_8k"]["ranks"] == [0, 1]
    m = _buffers(_state(out / "checkpoints" / "last.ckpt"), "mch_8k")  # both ranks' halves, rank 0 first
    raw, rows = m["_mch_sorted_raw_ids"].view(2, -1), m["_mch_remapped_ids_mapping"].view(2, -1)
    half = 2**61  # the input space [0, 2^62) in one block per rank
    held = raw != EMPTY
    assert bool((raw[0][held[0]] < half).all()) and bool((raw[1][held[1]] >= half).all())
    assert bool((rows[0] < 4096).all()) and bool((rows[1] >= 4096).all())
    seen = _seen_items(signal_corpus, r["train_days"])
    assert sorted(raw[held].tolist()) == sorted(mch_ids(seen, 0).tolist())  # every seen item holds a row


# -- the sharded managed-collision collection in one process: fast path vs DMP, eviction reset ------------
ROWS, DIM, B = 32, 8, 64
ROLES = ("candidate", "watch", "history")


def _mch_ranker(local: bool, eviction: str):
    tables = [EmbeddingBagConfig(name="m", embedding_dim=DIM, num_embeddings=ROWS,
                                 feature_names=[f"{r}__m" for r in ROLES])]
    module = RankerModule(RankerConfig(embedding_dim=DIM, hidden=[16], use_history=True), OptimConfig(),
                          tables=tables, seed=3, managed_collisions=MchConfig(name="m", rows=ROWS, eviction=eviction))
    strategy = TorchRecStrategy(sharding=ShardingConfig(local_lookup=local), parallel_devices=[torch.device("cpu")],
                                fused_params=module.optim_cfg.table.fused_params(), table_seed=3)
    dmp = strategy.shard(module)
    return module, dmp, module.configure_optimizers()


def _batch(rng: np.random.Generator) -> RankingBatch:
    """Ids drawn from 100 items for a 31-row table: every step brings new ids and evicts."""
    n_hist = rng.integers(0, 4, B)
    lengths = [np.ones(B, np.int64), np.ones(B, np.int64), n_hist]
    values = [mch_ids(rng.integers(0, 100, int(ln.sum())), 0) for ln in lengths]
    kjt = KeyedJaggedTensor(keys=[f"{r}__m" for r in ROLES], values=torch.from_numpy(np.concatenate(values)),
                            lengths=torch.from_numpy(np.concatenate(lengths)).int())
    return RankingBatch(kjt=kjt, content=None, context=torch.from_numpy(rng.random((B, 3), np.float32)),
                        labels=torch.from_numpy((rng.random((B, 2)) < 0.3).astype(np.float32)),
                        is_new=torch.zeros(B, dtype=torch.bool), popularity=torch.zeros(B, dtype=torch.int8),
                        history_items=torch.from_numpy(n_hist.astype(np.float32)), day=0)


def _step(module, dmp, opt, batch: RankingBatch) -> torch.Tensor:
    logits = dmp(batch)
    module._loss(logits, batch.labels)[0].backward()
    opt.step()
    opt.zero_grad()
    return logits.detach()


@pytest.mark.parametrize("eviction", ["lfu", "lru"])
def test_fast_path_trains_and_evicts_bit_identically_to_dmp(one_rank, eviction):  # noqa: F811
    fast, ref = _mch_ranker(True, eviction), _mch_ranker(False, eviction)
    assert list(sparse_lookup_paths(fast[1]).values()) == ["local"]
    assert list(sparse_lookup_paths(ref[1]).values()) == ["dmp"]
    rng = np.random.default_rng(0)
    for step in range(6):
        batch = _batch(rng)
        assert torch.equal(_step(*fast, batch), _step(*ref, batch)), step

    def plain(v):  # noqa: ANN001, ANN202
        return v.local_shards()[0].tensor if hasattr(v, "local_shards") else v

    a, b = ({k: plain(v) for k, v in m[1].state_dict().items()} for m in (fast, ref))
    assert a.keys() == b.keys() and not [k for k in a if not torch.equal(a[k], b[k])]
    mch = {k.rsplit(".", 1)[1]: v for k, v in a.items() if ".m._mch" in k}
    assert int((mch["_mch_sorted_raw_ids"] != EMPTY).sum()) == ROWS - 1  # full, and evicting since
    batch = _batch(rng)
    for m in (fast, ref):
        m[1].eval()
    with torch.no_grad():
        assert torch.equal(fast[1](batch), ref[1](batch))


def test_eviction_restarts_a_row_as_init_tables_began_it_with_zero_optimizer_state(one_rank):  # noqa: F811
    """FBGEMM's reset_weight_momentum has no CPU kernel: semid's reset writes the row's initial weights (the
    seeded block init of init_tables, not the global RNG a resumed run would not replay) and zeroes its
    row-wise Adagrad state."""
    module, dmp, opt = _mch_ranker(True, "lru")
    (smc,) = [m for m in dmp.modules() if isinstance(m, LocalShardedManagedCollisionEBC)]
    tbe, _ = smc._table_to_tbe_and_index["m"]
    weights, momentum = tbe.split_embedding_weights()[0], tbe.split_optimizer_states()[0][0]
    start = weights.clone()
    init_tables(dmp, 3)
    assert torch.equal(weights, start)  # the table starts as init_tables writes it
    resets = []
    evict = smc._evict

    def spy(evictions):  # noqa: ANN001, ANN202
        rows = evictions["m"]
        before = weights[rows].clone() if rows is not None else None
        evict(evictions)
        if rows is not None:
            resets.append((rows.clone(), before, weights[rows].clone(), momentum[rows].clone()))

    smc._evict = spy
    rng = np.random.default_rng(1)
    for _ in range(6):
        _step(module, dmp, opt, _batch(rng))
    assert resets and all(torch.equal(after, start[rows]) and not m.any() for rows, _, after, m in resets)
    # some restarted rows had trained for an earlier id (the reset is not a no-op on untouched rows)
    assert any(not torch.equal(before, start[rows]) for rows, before, _, _ in resets)
    assert momentum.any()  # and the rows in use did train
