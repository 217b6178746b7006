"""What ``semid plan`` plans: a paper-scale configuration on a described topology, and its tables' sizes.

Free of torch, so that ``semid``'s parser takes the plan command's defaults from here without importing
torch (the planner itself, ``semid.rankers.plan``, needs torchrec).

>>> from semid.rankers.plan_spec import PlanSpec, paper_tables
>>> dict(paper_tables(PlanSpec(representation="bigram", levels=4, codebook_size=16)))
{'bigram_g0': 256, 'bigram_g1': 256}
"""
from __future__ import annotations

from dataclasses import dataclass

from semid.core.errors import SemidError


@dataclass
class PlanSpec:
    representation: str = "bigram"  # hash | unigram | bigram | spm | all
    levels: int = 8  # L
    codebook_size: int = 2048  # K
    hash_rows: int = 10_000_000
    spm_rows: int | None = None  # default: the bigram budget (L/2 * K^2)
    dim: int = 128
    nodes: int = 4
    gpus_per_node: int = 8
    hbm_gb: float = 80.0
    ddr_gb: float = 512.0
    batch_size: int = 8192  # per rank
    sharding_types: list[str] | None = None
    optimizer: str = "rowwise_adagrad"


def paper_tables(spec: PlanSpec) -> list[tuple[str, int]]:
    """(table name, rows) of the paper-scale representations."""
    L, K = spec.levels, spec.codebook_size
    bigram_rows = (L // 2) * K * K
    tables: dict[str, list[tuple[str, int]]] = {
        "hash": [("hash", spec.hash_rows)],
        "unigram": [(f"unigram_l{i}", K) for i in range(L)],
        "bigram": [(f"bigram_g{i}", K * K) for i in range(L // 2)],
        "spm": [("spm", spec.spm_rows or bigram_rows)],
    }
    if spec.representation == "all":
        return [t for v in tables.values() for t in v]
    if spec.representation not in tables:
        raise SemidError(f"--representation must be one of {', '.join(tables)}, all (got '{spec.representation}')")
    return tables[spec.representation]
