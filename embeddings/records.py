"""The representations' JSON records: Figure 4's lookup statistics (``semid.embeddings.lookup_stats``).

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.embeddings.records import LookupStats
    >>> s: LookupStats = {"name": "hash_8k", "kind": "hash", "table_rows": 8192, "tables": 1}
    >>> s["tables"]
    1
"""
from __future__ import annotations

from typing import TypedDict


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
