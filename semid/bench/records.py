"""The benchmarks' JSON records: ``semid bench scale`` (child runs, RQ-VAE health, ranker fit per size),
``semid bench gpu``, ``semid bench lookups`` and the 2-process DMP rounds.

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.bench.records import ScaleRanker
    >>> r: ScaleRanker = {"train_samples_per_s": 4.1e4, "fit_wall_s": 12.5, "ctr_auc": 0.71, "lookups_per_item": 1.0}
    >>> r["ctr_auc"]
    0.71
"""
from __future__ import annotations

from typing import TypedDict

from semid.core.records import JsonObject


class ChildRun(TypedDict):
    """A benchmark child process run to completion (``semid.bench.scale.run_child``)."""

    rc: int
    wall_s: float
    peak_rss_mb: float
    tree_peak_rss_mb: float
    killed_over_max_rss: bool
    timed_out: bool
    tail: list[str]
    output: str
    command: str


class ScaleHealth(TypedDict):
    """The RQ-VAE health a scale-benchmark size records (``semid.bench.scale._health``)."""

    steps: int
    fit_s: float
    impressed_items: int
    relative_error: float | None
    unique_sid_fraction: float | None


class ScaleRanker(TypedDict):
    """The ranker fit a scale-benchmark size records (``semid.bench.scale._ranker``)."""

    train_samples_per_s: float | None
    fit_wall_s: float
    ctr_auc: float | None
    lookups_per_item: float | None


class GpuDevice(TypedDict):
    """The CUDA device ``semid bench gpu`` ran on (``semid.bench.gpu.require_cuda``)."""

    name: str
    count: int
    memory_gb: float
    capability: str
    torch: str
    cuda: str | None
    nccl: str | None


class GpuCheck(TypedDict, total=False):
    """``semid bench gpu`` (``semid.bench.gpu.run_gpu_check``): each check's child run (``ChildRun`` without its
    output, with ``ok`` and what the check measured), the device and the machine."""

    benchmark: str
    device: GpuDevice
    machine: dict[str, object]
    checks: dict[str, JsonObject]
    wall_s: float
    ok: bool


class LookupTarget(TypedDict):
    """One target of the lookup benchmark over every measured configuration (``semid.bench.lookups``)."""

    description: str
    met: int
    of: int
    worst_ratio: float
    worst_case: str
    median_ratio: float


class LookupBench(TypedDict, total=False):
    """``semid bench lookups`` (``semid.bench.lookups.run_lookup_bench``); ``results``: one record per (layout,
    rows, distribution) with per-mode figures and ratios (keys named after the mode: JSON objects)."""

    benchmark: str
    machine: dict[str, object]
    config: JsonObject
    spm_mean_lookups: float
    stream_copy_gb_per_s: float
    results: list[JsonObject]
    targets: dict[str, LookupTarget]
    targets_dmp: dict[str, LookupTarget]


class Throughput(TypedDict):
    """One contender's speed in one mode of the lookup benchmark."""

    ms_per_batch: float
    lookups_per_s: float
    samples_per_s: float
    gb_per_s: float


class Dmp2Train(TypedDict):
    ms_per_batch: float
    lookups_per_s: float
    samples_per_s: float


class Dmp2Rounds(TypedDict):
    """DMP on 2 processes against the 1-process DMP train step (``semid.bench.dmp2.run_dmp2_rounds``)."""

    sharding_type: str | None
    train: Dmp2Train
    dmp1_train_lookups_per_s: float
    train_ratio_vs_dmp1: float
