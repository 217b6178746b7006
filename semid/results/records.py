"""The results' JSON records: report.json's findings, summary and quantizer table, paired estimates
(``semid.results.paired``) and the Stage-1 analysis (Table 1 with intervals, Figure 4).

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.results.records import Finding
    >>> f: Finding = {"id": "a", "claim": "Dense Input is worse than hash-8K", "verdict": "reproduces"}
    >>> f["verdict"]
    'reproduces'
"""
from __future__ import annotations

from typing import NotRequired, TypedDict

from semid.embeddings.records import LookupReport
from semid.rqvae.records import Table1Row


class Finding(TypedDict, total=False):
    """One row of the findings table (``semid.results.findings``; report.json ``findings``)."""

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


# one statistic as ``semid.results.paired.Estimate.as_dict()`` returns it (estimate, ci_low, ci_high, n_seeds, ...);
# the one definition of that shape: Estimate.as_dict is annotated with it
EstimateDict = dict[str, float | int | str | None]


class SummaryRow(TypedDict, total=False):
    """One arm of report.json's ``summary`` (setting -> arm name -> row; ``semid.results.report.summarise``)."""

    kind: str
    table_rows: int
    depth_multiplier: float
    seeds: list[int]
    evaluation_days: list[int]
    lookups_per_item: float
    samples_per_s: float
    auc: dict[str, EstimateDict]  # slice -> pooled AUC
    vs_reference_pct: dict[str, EstimateDict]  # slice -> paired Δ% to the reference


class Table1IntervalRow(Table1Row):
    """A ``Table1Row`` with its 95% interval (``semid.results.analysis.table1_with_intervals``)."""

    ci_low: float | None
    ci_high: float | None


class Table1Rise(TypedDict):
    """The paired rise of the similarity from prefix length ``from_n`` to ``to_n``."""

    from_n: int
    to_n: int
    estimate: float | None
    ci_low: float | None
    ci_high: float | None


class Table1WithIntervals(TypedDict):
    """Table 1 with intervals, as the report uses it (``semid.results.analysis.table1_with_intervals``)."""

    rows: list[Table1IntervalRow]
    rises: list[Table1Rise]
    random_pair_baseline: float | None
    random_pairs: int
    clusters: int
    bootstraps: int
    interval: str


class Stage1Analysis(TypedDict):
    """``semid.results.analysis.stage1_analysis``: Table 1 with intervals and Figure 4's lookup statistics."""

    table1: Table1WithIntervals
    lookups: LookupReport


class SidCollisions(TypedDict):
    items: int
    unique_sid_fraction: float
    largest_collision_group: int


class CooccurRecord(TypedDict):
    """A behaviour-aware variant's co-occurrence term, from its health.json: lambda, the days its pairs came from
    and how many pairs it trained on."""

    weight: float
    days: list[int] | None
    pairs: int | None


class QuantizerVariant(TypedDict):
    """One Stage-1 variant of the quantizer table, with its health."""

    name: str
    quantizer: str
    collision_suffix: bool
    levels: int
    sids: str
    relative_error_heldout: float | None
    relative_error_all: float | None
    utilisation_mean: float | None
    items: int
    unique_sid_fraction: float
    largest_collision_group: int
    cooccur: NotRequired[CooccurRecord]  # lambda, days and pairs of a behaviour-aware variant (issue 33)


class QuantizerArm(TypedDict, total=False):
    """A variant's arm in one setting and representation: AUCs and the paired Δ% vs the main RQ-VAE's SIDs."""

    seeds: list[int]
    auc: dict[str, EstimateDict]
    vs_rqvae_pct: dict[str, EstimateDict]
    vs_baseline_pct: dict[str, EstimateDict]  # vs the main table's reference (hash-8K), when the study names it


class QuantizerSummary(TypedDict):
    """report.json's ``quantizers`` (``semid.results.quantizer_report.quantizer_summary``); ``ranking``: setting ->
    representation -> variant -> arm."""

    reference: str
    variants: list[QuantizerVariant]
    ranking: dict[str, dict[str, dict[str, QuantizerArm]]]
    baseline: NotRequired[str]  # the main table's reference the arms are also paired with
