"""Types of the JSON records the stages write and read (results.json, report.json findings, ...).

``JsonValue`` / ``JsonObject`` are for genuinely free-form JSON (a config as a dict, a file read back);
the ``TypedDict``s name the records with a known shape. They are annotations only: nothing here checks
a record at run time, and the keys are exactly those the writers use.
"""
from __future__ import annotations

from typing import TypedDict, Union

JsonValue = Union[None, bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"]]
JsonObject = dict[str, JsonValue]


class SliceMetrics(TypedDict, total=False):
    """One task x slice of ``rankers.metrics.SlicedMetrics.compute()``; ``auc`` is None when undefined."""

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
    """A ranker fit's ``results.json`` (``rankers.fit.fit``); readers add ``run_dir``, a skipped rerun
    ``skipped``."""

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


class EvalResults(TypedDict):
    """What ``rankers.fit.evaluate`` returns: a trained run evaluated on one day."""

    run: str
    representation: str
    setting: str
    eval_day: int
    train_samples_per_s: None
    metrics: EvalMetrics | None


class Finding(TypedDict, total=False):
    """One row of the findings table (``semid.findings``; report.json ``findings``)."""

    id: str
    source: str  # "paper" | "semid"
    claim: str
    setting: str
    metric: str
    direction: str  # ">", "<", ">=", "~"
    statistic: str | None
    reference: str | None
    candidate: str | None
    margin_pct: float | None
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int | None
    n_periods: int
    items: int
    impressions: int
    verdict: str  # "reproduces" | "contradicted" | "inconclusive" | "not run"
    reason: str | None
    explanation: str | None


class CellEntry(TypedDict):
    """One regime cell's outcome for one findings row (``semid.regimes.regime_table``)."""

    verdict: str | None
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int | None
    candidate: str | None
    reference: str | None


class RegimeRow(TypedDict):
    """A findings row across the regime grid: cell name -> its entry."""

    key: str
    id: str
    claim: str
    label: str
    setting: str | None
    metric: str | None
    direction: str | None
    cells: dict[str, CellEntry]


class RegimeCell(TypedDict, total=False):
    """One cell of a regime map as regimes.json records it (``semid.regimes._cell_record``)."""

    name: str
    label: str
    knobs: dict[str, float]
    in_grid: bool
    synth_overrides: list[str]
    experiment_overrides: list[str]
    seeds: list[int]
    dir: str
    wall_s: float
    fit_s: float
    regime: JsonObject
    oracle: JsonObject
    findings: list[Finding]
    note: str
    calibration: JsonObject


# one statistic as ``semid.paired.Estimate.as_dict()`` returns it (estimate, ci_low, ci_high, n_seeds, ...);
# the one definition of that shape: Estimate.as_dict is annotated with it
EstimateDict = dict[str, float | int | str | None]


class SummaryRow(TypedDict, total=False):
    """One arm of report.json's ``summary`` (setting -> arm name -> row; ``semid.report.summarise``)."""

    kind: str
    table_rows: int
    depth_multiplier: float
    seeds: list[int]
    evaluation_days: list[int]
    lookups_per_item: float
    samples_per_s: float
    auc: dict[str, EstimateDict]  # slice -> pooled AUC
    vs_reference_pct: dict[str, EstimateDict]  # slice -> paired Δ% to the reference


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
