"""Serving's JSON records: a ranker table as ``ranker.pt`` records it and ``semid serve-bench``'s rows.

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.serve.records import TableDict
    >>> t: TableDict = {"name": "t_hash", "num_embeddings": 8192, "embedding_dim": 16, "feature_names": ["f_hash"]}
    >>> t["num_embeddings"]
    8192
"""
from __future__ import annotations

from typing import TypedDict


class TableDict(TypedDict):
    """A ranker table config as ``ranker.pt`` records it (``semid.serve.artifact.table_dicts``)."""

    name: str
    num_embeddings: int
    embedding_dim: int
    feature_names: list[str]


class ServeBenchRow(TypedDict):
    """One (artifact, batch size, path) of ``semid bench serve`` (``semid.serve.bench.run_bench``)."""

    model: str
    representation: str
    quantization: str
    path: str
    batch: int
    calls: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float


class ServeBench(TypedDict):
    rows: list[ServeBenchRow]
    machine: dict[str, object]
    seconds_per_cell: float
    min_calls: int
    rounds: int
