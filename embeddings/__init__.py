"""Item representations: SIDs (or item ids) -> tokens -> rows of TorchRec embedding tables.

Representations (``conf/embeddings/*.yaml``, ``kind:``): ``hash`` (random hashing of item ids, the
baseline), ``ngram`` (unigram-SID n=1, bigram-SID n=2, any non-overlapping n), ``prefix_ngram``,
``spm`` (SentencePiece over SIDs), ``hybrid`` (several of these, each with its own tables), ``mch``
(TorchRec managed collisions: tokens are raw ids that the ranker's ``ManagedCollisionCollection``, from
``managed_collision_collection``, remaps to rows with LFU/LRU eviction) and
``dense`` (no table: ``cache.kind == "dense"``, ``cache.tables == []``; the ranker projects the raw
content embedding, and ``cache.rows_of`` still maps item ids to rows of ``cache.item_id``).

``SemanticIdCollection`` puts any of these in front of a TorchRec ``EmbeddingBagCollection`` (raw item-id KJT in,
SID-piece KJT out), fitted from arrays with ``SidTokenizer`` and the plain config dataclasses (``SpmConfig``, ...).

Names are imported on first use (PEP 562), so ``semid`` commands that never touch TorchRec do not pay
for importing it.
"""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

_EXPORTS = {
    "RepresentationConfig": "semid.embeddings.registry",
    "load_representation_config": "semid.embeddings.registry",
    "parse_representation": "semid.embeddings.registry",
    "CacheFeatures": "semid.embeddings.torchrec_io",
    "TokenCache": "semid.embeddings.token_cache",
    "build_token_cache": "semid.embeddings.token_cache",
    "build_tokenizer": "semid.embeddings.registry",
    "TableSpec": "semid.embeddings.tokenizer",
    "SidSpace": "semid.embeddings.tokenizer",
    "lookup_report": "semid.embeddings.lookup_stats",
    "plot_report": "semid.embeddings.lookup_stats",
    "TokenizerWarning": "semid.embeddings.tokenizer",
    "MchConfig": "semid.embeddings.mch",
    "managed_collision_collection": "semid.embeddings.mch",
    "TableOptimizerConfig": "semid.embeddings.torchrec_io",
    "build_kjt": "semid.embeddings.torchrec_io",
    "embedding_bag_configs": "semid.embeddings.torchrec_io",
    "feature_keys": "semid.embeddings.torchrec_io",
    "fused_params": "semid.embeddings.torchrec_io",
    # Semantic IDs inside any TorchRec model (issue 30): plain configs, a fitted tokenizer, the module, its errors
    "HashConfig": "semid.embeddings.hashing",
    "NgramConfig": "semid.embeddings.ngram",
    "PrefixNgramConfig": "semid.embeddings.ngram",
    "SpmConfig": "semid.embeddings.spm",
    "RandomSidConfig": "semid.embeddings.random_sid",
    "HybridConfig": "semid.embeddings.hybrid",
    "SidTokenizer": "semid.embeddings.sid_tokenizer",
    "sid_table": "semid.embeddings.sid_tokenizer",
    "SemanticIdCollection": "semid.embeddings.sid_collection",
    "UnknownFeatureError": "semid.embeddings.sid_errors",
    "IdDtypeError": "semid.embeddings.sid_errors",
    "SidSpaceError": "semid.embeddings.sid_errors",
    "ContentDimError": "semid.embeddings.sid_errors",
    "DeviceMismatchError": "semid.embeddings.sid_errors",
    "UnknownItemError": "semid.embeddings.sid_errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
