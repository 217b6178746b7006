"""DMP on 2 spawned processes (gloo, table_wise), timed in turn with the 1-process DMP of the parent.

The two workers build the same layout (each rank feeds its half of the global batch) through
``TorchRecStrategy.shard`` on a 2-process group and then wait, blocked on a pipe, while the parent
times its own 1-process DMP; then the parent lets them run one round and waits in turn. So each round
has one 1-process and one 2-process figure, taken a moment apart, and their ratio is per round.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from semid.bench.timing import median
from semid.bench.workloads import Batch, Layout, LookupBenchConfig, Step, build_torchrec, make_batches
from semid.bench.records import Dmp2Rounds

WORLD = 2


def _worker(rank: int, store: str, layout: Layout, dist_name: str, cfg: LookupBenchConfig,
            conn: Connection) -> None:
    import torch.distributed as dist  # in the spawned worker only: see semid.bench.lookups' imports

    torch.set_num_threads(1)  # two processes on a 2-core machine: one thread each
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        half = cfg.batch // WORLD
        mine = [_half(b, rank, half) for b in make_batches(layout, dist_name, cfg)]
        built = build_torchrec(layout, mine, replace(cfg, batch=half), torch.device("cpu"), ["table_wise"])
        for _ in range(cfg.warmup):
            built.train()
        dist.barrier()
        conn.send(("ready", built.info.get("sharding_type")))
        while True:
            msg = conn.recv()
            if msg == "stop":
                break
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(cfg.iters):
                built.train()
            dist.barrier()
            conn.send((time.perf_counter() - t0) / cfg.iters)
    finally:
        dist.destroy_process_group()


def _half(b: Batch, rank: int, half: int) -> Batch:
    """This rank's samples [rank * half, (rank + 1) * half) of a batch, every table."""
    values, lengths = [], []
    for v, ln in zip(b.values, b.lengths):
        off = np.concatenate([[0], np.cumsum(ln)])
        values.append(v[off[rank * half]:off[(rank + 1) * half]])
        lengths.append(ln[rank * half:(rank + 1) * half])
    return Batch(values, lengths)


def run_dmp2_rounds(layout: Layout, dist_name: str, cfg: LookupBenchConfig, dmp1_train: Step,
                    lookups: int) -> Dmp2Rounds:
    """Per round: the parent's 1-process DMP train step, then the 2-process one; medians and ratio (JSON)."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="semid-dmp2-") as tmp:
        store = str(Path(tmp) / "store")
        pipes = [ctx.Pipe() for _ in range(WORLD)]
        procs = [ctx.Process(target=_worker, args=(r, store, layout, dist_name, cfg, pipes[r][1]), daemon=True)
                 for r in range(WORLD)]
        for p in procs:
            p.start()
        try:
            ready = [pipes[r][0].recv() for r in range(WORLD)]
            one, two = [], []
            for _ in range(cfg.rounds):
                t0 = time.perf_counter()
                for _ in range(cfg.iters):
                    dmp1_train()
                one.append((time.perf_counter() - t0) / cfg.iters)
                for r in range(WORLD):
                    pipes[r][0].send("go")
                two.append(max(pipes[r][0].recv() for r in range(WORLD)))
            for r in range(WORLD):
                pipes[r][0].send("stop")
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
    s = median(two)
    return {"sharding_type": ready[0][1], "train": {"ms_per_batch": s * 1e3, "lookups_per_s": lookups / s,
                                                   "samples_per_s": cfg.batch / s},
            "dmp1_train_lookups_per_s": lookups / median(one),
            "train_ratio_vs_dmp1": median([a / b for a, b in zip(one, two)])}
