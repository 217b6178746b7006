"""``semid plan``: a TorchRec planner dry run for a paper-scale configuration on a described topology.

Runs on a CPU-only machine: the tables are built on ``meta`` and planned for ``cuda`` devices with
the given HBM, without any process group. Per-rank memory is read back from the plan's shards:
weights plus the fused optimizer's state (row-wise Adagrad keeps one float per row).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from semid.core.errors import SemidError
from semid.rankers.plan_spec import PlanSpec, paper_tables

__all__ = ["PlanSpec", "dry_run", "paper_tables", "render"]

GB = 1024 ** 3


def dry_run(spec: PlanSpec) -> dict[str, Any]:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology

    from semid.embeddings import fused_params

    world = spec.nodes * spec.gpus_per_node
    roles = ("candidate", "watch", "history")
    configs = [EmbeddingBagConfig(name=n, num_embeddings=rows, embedding_dim=spec.dim,
                                  feature_names=[f"{r}__{n}" for r in roles], pooling=PoolingType.SUM)
               for n, rows in paper_tables(spec)]
    ebc = EmbeddingBagCollection(tables=configs, device=torch.device("meta"))
    topology = Topology(world_size=world, compute_device="cuda", hbm_cap=int(spec.hbm_gb * GB),
                        ddr_cap=int(spec.ddr_gb * GB), local_world_size=spec.gpus_per_node)
    constraints = {c.name: ParameterConstraints(sharding_types=list(spec.sharding_types))
                   for c in configs} if spec.sharding_types else None
    sharder = EmbeddingBagCollectionSharder(fused_params=fused_params(spec.optimizer))
    planner = EmbeddingShardingPlanner(topology=topology, batch_size=spec.batch_size, constraints=constraints,
                                       debug=False)
    try:
        plan = planner.plan(ebc, [sharder])
    except Exception as e:  # the planner's own message says which table does not fit
        raise SemidError(f"no sharding plan fits this topology: {str(e).splitlines()[0]}") from None
    opt_cols = 1 if spec.optimizer == "rowwise_adagrad" else (spec.dim if spec.optimizer in ("adagrad",) else 0)
    per_rank: dict[int, float] = defaultdict(float)
    tables = []
    for _, module_plan in plan.plan.items():
        for name, ps in module_plan.items():
            shards = ps.sharding_spec.shards if ps.sharding_spec is not None else []
            ranks = []
            for s in shards:
                rows, cols = s.shard_sizes
                rank = s.placement.rank()
                per_rank[rank] += (rows * cols + rows * min(opt_cols, cols)) * 4
                ranks.append(rank)
            rows_total = dict(paper_tables(spec))[name]
            if ps.sharding_type == "data_parallel":  # a full replica (and dense optimizer state) on every rank
                for rank in range(world):
                    per_rank[rank] += rows_total * spec.dim * 4 * 2
                ranks = list(range(world))
            tables.append({"table": name, "rows": rows_total, "sharding_type": ps.sharding_type,
                           "compute_kernel": ps.compute_kernel, "shards": len(shards),
                           "ranks": f"{min(ranks)}..{max(ranks)}" if ranks else "-",
                           "gb": rows_total * spec.dim * 4 / GB})
    mem = [per_rank.get(r, 0.0) / GB for r in range(world)]
    return {"spec": spec.__dict__, "world_size": world, "tables": tables, "per_rank_gb": mem,
            "max_rank_gb": max(mem), "min_rank_gb": min(mem), "total_gb": sum(mem),
            "hbm_gb": spec.hbm_gb}


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console(width=120)
    s = result["spec"]
    t = Table(title=f"sharding plan: {s['representation']} tables (L={s['levels']}, K={s['codebook_size']}, "
                    f"dim {s['dim']}) on {s['nodes']} nodes x {s['gpus_per_node']} GPUs ({s['hbm_gb']:.0f} GB HBM)")
    for col in ("table", "rows", "GB (weights)", "sharding", "kernel", "shards", "ranks"):
        t.add_column(col, justify="right" if col in ("rows", "GB (weights)", "shards") else "left")
    for r in result["tables"]:
        t.add_row(r["table"], f"{r['rows']:,}", f"{r['gb']:.2f}", r["sharding_type"], r["compute_kernel"],
                  str(r["shards"]), r["ranks"])
    c.print(t)
    m = Table(title="per-rank memory (weights + fused optimizer state)")
    m.add_column("rank", justify="right")
    m.add_column("GB", justify="right")
    m.add_column("% of HBM", justify="right")
    for rank, gb in enumerate(result["per_rank_gb"]):
        m.add_row(str(rank), f"{gb:.2f}", f"{100 * gb / result['hbm_gb']:.1f}%")
    c.print(m)
    c.print(f"total {result['total_gb']:.1f} GB over {result['world_size']} ranks; max {result['max_rank_gb']:.2f} GB, "
            f"min {result['min_rank_gb']:.2f} GB per rank")
