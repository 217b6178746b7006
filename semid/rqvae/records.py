"""Stage 1's JSON records: SID-table health (uniqueness, code usage), a quantizer run's ``health.json``, the
paper's Table 1, ``semid sids report`` / ``compare`` / ``bench`` and residual k-means' per-level statistics.

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.rqvae.records import Uniqueness
    >>> u: Uniqueness = {"items": 4, "unique_sids": 3, "unique_sid_fraction": 0.75, "largest_collision_group": 2,
    ...                   "items_sharing_a_sid": 2}
    >>> u["unique_sid_fraction"]
    0.75
"""
from __future__ import annotations

from typing import TypedDict

from semid.core.records import JsonObject


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
    """Reconstruction and SID statistics on a set of items (``semid.rqvae.runs.sid_health``; health.json's
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
    """A quantizer run's ``health.json`` (``semid.rqvae.runs.health_record``); ``quantizer`` and ``train`` say what ran
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


class RqkmeansLevel(TypedDict):
    """One level's fit statistics of residual k-means (``semid.rqvae.rqkmeans.fit_rqkmeans``)."""

    level: int
    utilisation: float
    largest_code: int
    cap: int | None
    residual_sq: float
