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


class LoadLevel(TypedDict):
    """One (batch size, clients) level of ``semid serve-bench --clients`` (``semid.serve.loadtest.run_load``)."""

    batch: int
    clients: int
    seconds: float  # from the start of the timed calls to the last answer
    requests: int  # answered 200
    requests_per_s: float
    items_per_s: float  # requests_per_s x batch
    p50_ms: float
    p99_ms: float
    errors: int  # answers other than 200, timeouts, other failures (resets not included)
    resets: int  # connection reset, broken pipe, or closed without an answer
    statuses: dict[str, int]  # the non-200 answers by status
    load_before: float  # 1-minute load average
    load_after: float


class ServeLoad(TypedDict):
    levels: list[LoadLevel]
    model: str
    representation: str
    quantization: str
    machine: dict[str, object]
    seconds_per_level: float
    max_requests: int
    errors: int  # errors + resets over all levels
    best_single_client_items_per_s: float
    most_clients: int
    most_clients_items_per_s: float
    ratio: float  # most_clients_items_per_s / best_single_client_items_per_s
