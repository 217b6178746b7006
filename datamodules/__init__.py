"""Corpus format and checked readers (``open_corpus``: how every command opens a corpus), synthetic generator,
MovieLens import, and the day-ordered ranking DataModule with its batch type.

Other rooms use these names; the rest of the package is private to it. Names load on first use (PEP 562),
so ``from datamodules import Corpus`` does not pull in Lightning or TorchRec.
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "Corpus": "semid.datamodules.corpus", "CorpusWriter": "semid.datamodules.corpus", "Items": "semid.datamodules.corpus",
    "to_int64": "semid.datamodules.corpus",
    "validate_corpus": "semid.datamodules.validate", "ValidationReport": "semid.datamodules.validate",
    "open_corpus": "semid.datamodules.gate", "check_corpus": "semid.datamodules.gate",
    "generate": "semid.datamodules.synth", "load_synth_config": "semid.datamodules.synth",
    "BUCKETS": "semid.datamodules.stats", "HEAD": "semid.datamodules.stats", "TORSO": "semid.datamodules.stats",
    "TAIL": "semid.datamodules.stats", "corpus_impressions": "semid.datamodules.stats", "popularity_buckets": "semid.datamodules.stats",
    "ROLES": "semid.datamodules.batch", "RankingBatch": "semid.datamodules.batch", "SparseFeatures": "semid.datamodules.batch",
    "feature_key": "semid.datamodules.batch",
    "CONTEXT_DIM": "semid.datamodules.ranking", "RankingDataConfig": "semid.datamodules.ranking",
    "RankingDataModule": "semid.datamodules.ranking", "resolve_days": "semid.datamodules.ranking",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
