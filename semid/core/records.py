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


# -- Stage 1: SID tables, quantizer health, Table 1, lookups ---------------------------------------------------


class Uniqueness(TypedDict):
    """How unique the full SIDs of a table are (``semid.rqvae.health.uniqueness``)."""

    items: int
    unique_sids: int
    unique_sid_fraction: float
    largest_collision_group: int
    items_sharing_a_sid: int


class CodesSummary(Uniqueness):
    """Code usage of a set of SIDs (``semid.rqvae.health.codes_summary``): utilisation and perplexity per level
    plus ``Uniqueness``."""

    utilisation_per_level: list[float]
    perplexity_per_level: list[float]


class _OptionalCodes(TypedDict, total=False):
    """``CodesSummary``'s keys, each optional: records that carry them only when there were items to measure."""

    utilisation_per_level: list[float]
    perplexity_per_level: list[float]
    items: int
    unique_sids: int
    unique_sid_fraction: float
    largest_collision_group: int
    items_sharing_a_sid: int


class SidHealth(_OptionalCodes, total=False):
    """Reconstruction and SID statistics on a set of items (``semid.rqvae.train.sid_health``; health.json's
    ``heldout`` and ``all_items``): ``CodesSummary``'s keys and the reconstruction errors; on no items only
    ``items`` (0)."""

    recon_loss: float
    relative_error: float


class CodebookAgreementResult(TypedDict):
    """Whether every rank trained the same codebooks (``semid.rqvae.callbacks.CodebookAgreement.result``)."""

    world_size: int
    codebooks_identical_across_ranks: bool
    max_abs_codebook_difference: float


class QuantizerHealth(TypedDict, total=False):
    """A quantizer run's ``health.json`` (``semid.rqvae.train._health``); ``quantizer`` and ``train`` say what ran
    (their keys depend on the quantizer kind)."""

    fingerprint: str
    corpus_fingerprint: str
    corpus: str
    semid_version: str
    code_fingerprint: str
    code_rooms: str
    levels: int
    codebook_size: int
    quantizer: JsonObject
    train: JsonObject
    heldout: SidHealth
    all_items: SidHealth
    warnings: list[str]


class Table1Row(TypedDict):
    """One prefix length of the paper's Table 1 (``semid.rqvae.report.table1``); the similarity is None without
    pairs."""

    n: int
    avg_cosine_similarity: float | None
    pairs: int
    prefixes: int
    subtrie_size_p25: float
    subtrie_size_median: float
    subtrie_size_p75: float


class Table1(TypedDict):
    rows: list[Table1Row]
    random_pair_baseline: float | None
    random_pairs: int


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


class LookupStats(TypedDict, total=False):
    """One representation of Figure 4 (``semid.embeddings.lookup_stats.lookup_stats``); bucket -> value maps
    (``all``, ``head``, ``torso``, ``tail``); ``unk_token_share`` and ``requested_vocab_size`` for SPM only."""

    name: str
    kind: str
    table_rows: int
    tables: int
    mean_lookups: dict[str, float | None]
    items: dict[str, int]
    unk_token_share: float
    requested_vocab_size: int


class LookupReport(TypedDict):
    """Figure 4's numbers (``semid.embeddings.lookup_stats.lookup_report``)."""

    sid_levels: int
    codebook_size: int
    sid_space: str
    sid_table: str
    items: int
    impressions: int
    bucket_definition: str
    representations: list[LookupStats]
    warnings: list[str]


class Stage1Analysis(TypedDict):
    """``semid.results.analysis.stage1_analysis``: Table 1 with intervals and Figure 4's lookup statistics."""

    table1: Table1WithIntervals
    lookups: LookupReport


class SubtrieNode(TypedDict, total=False):
    """A node of a SID sub-trie (``semid.rqvae.report.subtrie``): a leaf has ``titles``, an inner node
    ``children``; ``code`` on children, ``prefix`` on the root."""

    prefix: list[int]
    code: int
    items: int
    titles: list[str]
    more_items: int
    children: list[SubtrieNode]
    more_children: int
    more_children_items: int


class SidReport(TypedDict, total=False):
    """``semid sids report`` (``semid.rqvae.report.sid_report``); ``subtrie`` when a prefix was asked for."""

    items: int
    missing_from_corpus: int
    levels: int
    codebook_size: int
    collision_suffix: bool
    rqvae_fingerprint: str
    table_fingerprint: str
    table1: Table1
    utilisation_per_level: list[float]
    perplexity_per_level: list[float]
    uniqueness: Uniqueness
    collision_histogram: dict[int, int]
    subtrie: SubtrieNode


class LevelAgreement(TypedDict):
    level: int
    agreement: float
    raw_agreement: float


class PrefixStability(TypedDict):
    """Item pairs sharing a prefix of length n in table A, in B, in both (``semid.rqvae.compare``)."""

    n: int
    pairs_a: int
    pairs_b: int
    pairs_both: int
    a_pairs_kept_in_b: float | None
    b_pairs_kept_in_a: float | None


class SidComparison(TypedDict):
    """``semid sids compare`` (``semid.rqvae.compare.compare_tables``)."""

    items_a: int
    items_b: int
    common_items: int
    levels_compared: int
    matching: str
    same_rqvae: bool
    identical_sids: float
    per_level: list[LevelAgreement]
    prefix_stability: list[PrefixStability]


class QuantizerBenchRow(_OptionalCodes, total=False):
    """One quantizer of ``semid sids bench`` (``semid.rqvae.bench._measure``): ``method`` and either
    ``skipped`` or the measurements (with ``CodesSummary``'s keys)."""

    method: str
    skipped: str
    relative_error: float
    fit_seconds: float
    encode_items_per_s: int
    note: str


class QuantizerBench(TypedDict):
    """``semid sids bench`` (``semid.rqvae.bench.bench_peers``)."""

    corpus: str
    corpus_fingerprint: str
    items: int
    dim: int
    levels: int
    codebook_size: int
    torch_threads: int
    rows: list[QuantizerBenchRow]


# -- the report's quantizer table (semid.results.quantizer_report) ----------------------------------------------------


class SidCollisions(TypedDict):
    items: int
    unique_sid_fraction: float
    largest_collision_group: int


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


class QuantizerArm(TypedDict, total=False):
    """A variant's arm in one setting and representation: AUCs and the paired Δ% vs the main RQ-VAE's SIDs."""

    seeds: list[int]
    auc: dict[str, EstimateDict]
    vs_rqvae_pct: dict[str, EstimateDict]


class QuantizerSummary(TypedDict):
    """report.json's ``quantizers`` (``semid.results.quantizer_report.quantizer_summary``); ``ranking``: setting ->
    representation -> variant -> arm."""

    reference: str
    variants: list[QuantizerVariant]
    ranking: dict[str, dict[str, dict[str, QuantizerArm]]]



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


class QuantizerStudy(TypedDict):
    """The quantizer study as the experiment hands it to the report: every variant and its fits."""

    representations: list[str]
    variants: list[StudyVariant]
    results: list[FitResults]


class StabilityStudy(TypedDict):
    """Appendix A.2 as the experiment hands it to the report (``semid.study.experiment``'s ``stability``): the fits
    driven by the early and the late RQ-VAE (tag -> results) and the agreement of their SID tables."""

    representation: str
    early_days: list[int]
    late_days: list[int]
    results: dict[str, FitResults]
    agreement: SidComparison


# -- benchmarks and serving --------------------------------------------------------------------------------


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


class RqkmeansLevel(TypedDict):
    """One level's fit statistics of residual k-means (``semid.rqvae.rqkmeans.fit_rqkmeans``)."""

    level: int
    utilisation: float
    largest_code: int
    cap: int | None
    residual_sq: float
