"""The ranker's JSON records: a fit's ``results.json`` (``FitResults``), an evaluation (``EvalResults``), the
sliced metrics inside both and the sharding plan of each table.

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.rankers.records import SliceMetrics
    >>> m: SliceMetrics = {"impressions": 120, "positives": 9, "auc": None, "undefined": "one class"}
    >>> m["auc"] is None
    True
"""
from __future__ import annotations

from typing import TypedDict

from semid.core.records import JsonObject


class SliceMetrics(TypedDict, total=False):
    """One task x slice of ``semid.rankers.metrics.SlicedMetrics.compute()``; ``auc`` is None when undefined."""

    impressions: int
    positives: int
    items: int
    auc: float | None
    logloss: float
    ci_low: float
    ci_high: float
    bootstrap_std: float
    undefined: str


# task ("ctr", ...) -> slice ("overall", "new", "head", ...) -> metrics
EvalMetrics = dict[str, dict[str, SliceMetrics]]


class TablePlan(TypedDict):
    """One table of ``TorchRecStrategy.plan_summary()``."""

    sharding_type: str
    compute_kernel: str
    ranks: list[int]


class FitResults(TypedDict, total=False):
    """A ranker fit's ``results.json`` (``semid.rankers.fit.fit``); readers add ``run_dir``, a skipped rerun
    ``skipped``, the experiment the row's ``name``, ``seed`` and ``tag``."""

    representation: str
    representation_kind: str
    setting: str  # "with_history" | "without_history"
    fingerprint: str
    semid_version: str
    code_fingerprint: str
    code_rooms: str
    corpus: str
    corpus_fingerprint: str
    token_cache_fingerprint: str | None
    sids: str | None
    sids_fingerprint: str | None
    learned_config: JsonObject
    train_days: list[int]
    eval_day: int
    table_rows: dict[str, int]
    lookups_per_item: float
    world_size: int
    global_rank: int
    train_samples_per_s: float | None
    wall_seconds: float
    metrics_by_day: dict[str, EvalMetrics]
    predictions: dict[str, str]
    metrics: EvalMetrics | None
    config: JsonObject
    sharding_plan: dict[str, TablePlan]
    skipped: bool
    run_dir: str
    name: str
    seed: int
    tag: str


class EvalResults(TypedDict):
    """What ``semid.rankers.fit.evaluate`` returns: a trained run evaluated on one day."""

    run: str
    representation: str
    setting: str
    eval_day: int
    train_samples_per_s: None
    metrics: EvalMetrics | None
