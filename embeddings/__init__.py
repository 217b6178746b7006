"""Item representations: SIDs (or item ids) -> tokens -> rows of TorchRec embedding tables.

Representations (``conf/embeddings/*.yaml``, ``kind:``): ``hash`` (random hashing of item ids, the
baseline), ``ngram`` (unigram-SID n=1, bigram-SID n=2, any non-overlapping n), ``prefix_ngram``,
``spm`` (SentencePiece over SIDs), ``hybrid`` (several of these, each with its own tables), ``mch``
(TorchRec managed collisions: tokens are raw ids that the ranker's ``ManagedCollisionCollection``, from
``managed_collision_collection``, remaps to rows with LFU/LRU eviction) and
``dense`` (no table: ``cache.kind == "dense"``, ``cache.tables == []``; the ranker projects the raw
content embedding, and ``cache.rows_of`` still maps item ids to rows of ``cache.item_id``).

Names are imported on first use (PEP 562), so ``semid`` commands that never touch TorchRec do not pay
for importing it.
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "RepresentationConfig": "embeddings.registry",
    "load_representation_config": "embeddings.registry",
    "parse_representation": "embeddings.registry",
    "CacheFeatures": "embeddings.torchrec_io",
    "TokenCache": "embeddings.token_cache",
    "build_token_cache": "embeddings.token_cache",
    "build_tokenizer": "embeddings.registry",
    "TableSpec": "embeddings.tokenizer",
    "SidSpace": "embeddings.tokenizer",
    "lookup_report": "embeddings.lookup_stats",
    "plot_report": "embeddings.lookup_stats",
    "TokenizerWarning": "embeddings.tokenizer",
    "MchConfig": "embeddings.mch",
    "managed_collision_collection": "embeddings.mch",
    "TableOptimizerConfig": "embeddings.torchrec_io",
    "build_kjt": "embeddings.torchrec_io",
    "embedding_bag_configs": "embeddings.torchrec_io",
    "feature_keys": "embeddings.torchrec_io",
    "fused_params": "embeddings.torchrec_io",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
