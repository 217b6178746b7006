"""Corpus format and checked readers (``open_corpus``: how every command opens a corpus), synthetic generator,
MovieLens import, and the day-ordered ranking DataModule with its batch type.

Other rooms use these names; the rest of the package is private to it. Names load on first use (PEP 562),
so ``from datamodules import Corpus`` does not pull in Lightning or TorchRec.
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "Corpus": "datamodules.corpus", "CorpusWriter": "datamodules.corpus", "Items": "datamodules.corpus",
    "to_int64": "datamodules.corpus",
    "validate_corpus": "datamodules.validate", "ValidationReport": "datamodules.validate",
    "open_corpus": "datamodules.gate", "check_corpus": "datamodules.gate",
    "generate": "datamodules.synth", "load_synth_config": "datamodules.synth",
    "BUCKETS": "datamodules.stats", "HEAD": "datamodules.stats", "TORSO": "datamodules.stats",
    "TAIL": "datamodules.stats", "corpus_impressions": "datamodules.stats", "popularity_buckets": "datamodules.stats",
    "ROLES": "datamodules.batch", "RankingBatch": "datamodules.batch", "SparseFeatures": "datamodules.batch",
    "feature_key": "datamodules.batch",
    "CONTEXT_DIM": "datamodules.ranking", "RankingDataConfig": "datamodules.ranking",
    "RankingDataModule": "datamodules.ranking", "resolve_days": "datamodules.ranking",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
