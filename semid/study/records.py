"""The study's JSON records: a regime map's cells, rows, knob effects, flips and calibrations (``semid.study.regimes``,
regimes' report.json) and the studies the experiment hands the report (the quantizer study, Appendix A.2's
stability study).

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.study.records import KnobEffect
    >>> e: KnobEffect = {"low": 0.2, "high": 0.8, "lines": 2, "lines_with_change": 2, "monotone": True,
    ...                   "verdict_shift": 2.0, "estimate_shift": -5.0}
    >>> e["verdict_shift"]
    2.0
"""
from __future__ import annotations

from typing import NotRequired, TypedDict

from semid.core.records import JsonObject
from semid.rankers.records import FitResults
from semid.rqvae.records import SidComparison, SidHealth
from semid.results.records import CooccurRecord, Finding


class CellEntry(TypedDict):
    """One regime cell's outcome for one findings row (``semid.study.regimes.regime_table``)."""

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
    """One cell of a regime map as regimes.json records it (``semid.study.regimes._cell_record``)."""

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
    calibration: Calibration


class KnobEffect(TypedDict):
    """How one knob moves a findings row over the grid (``semid.study.regimes.knob_effects``): from its lowest to its
    highest value, averaged over the lines that hold the other knobs fixed."""

    low: float
    high: float
    lines: int
    lines_with_change: int
    monotone: bool
    verdict_shift: float | None
    estimate_shift: float | None


class Flip(TypedDict):
    """What the grid says about one findings row (``semid.study.regimes.flip_of``)."""

    key: str
    id: str
    kind: str  # flips | partial | reproduces | contradicted | inconclusive | unjudged
    counts: dict[str, int]
    cells: int
    knob: str | None
    effects: dict[str, KnobEffect]


class MeasuredGap(TypedDict):
    estimate: float
    ci_low: float | None
    ci_high: float | None


class Calibration(TypedDict):
    """A calibrated cell's fit (``semid.study.regimes.calibration_of``): targeted vs measured Δ% and the residuals."""

    target: dict[str, float]
    measured: dict[str, MeasuredGap | None]
    residual: dict[str, float | None]
    rms_residual: float | None


class StudyVariant(TypedDict):
    """One Stage-1 variant of the quantizer study (``semid.study.experiment``'s ``quantizer_study``): its model and SID
    table, and the health of its quantizer (``all_items``, ``heldout``; None where health.json lacks it)."""

    name: str
    model: str
    sids: str
    quantizer: str
    collision_suffix: bool
    levels: int
    health: dict[str, SidHealth | None]
    cooccur: NotRequired[CooccurRecord]  # a behaviour-aware quantizer (rqvae_cooc, issue 33) only


class QuantizerStudy(TypedDict):
    """The quantizer study as the experiment hands it to the report: every variant and its fits."""

    representations: list[str]
    variants: list[StudyVariant]
    results: list[FitResults]
    baseline: NotRequired[str]  # the main table's reference (e.g. hash_8k): every arm is also paired with it


class StabilityStudy(TypedDict):
    """Appendix A.2 as the experiment hands it to the report (``semid.study.experiment``'s ``stability``): the fits
    driven by the early and the late RQ-VAE (tag -> results) and the agreement of their SID tables."""

    representation: str
    early_days: list[int]
    late_days: list[int]
    results: dict[str, FitResults]
    agreement: SidComparison
