"""semid: Semantic IDs for ranking models (Singh et al., "Better Generalization with Semantic IDs").

The public names (``semid.__all__``; see ``semid.api``) load on first use: every room imports ``semid.core``,
which runs this file, so it must stay free of torch and of the rooms themselves.

>>> import semid
>>> semid.SpmConfig(vocab_size=1024).vocab_size
1024
"""
from semid.core.errors import DataError, FingerprintMismatch, SemidError
from semid.core.lazy import lazy_getattr
from semid.core.version import __version__

# the map of semid.api.SOURCES, restated here because importing semid.api would import torch (a test holds the
# two equal)
_EXPORTS = {
    "import_log": "semid.datamodules.log_import", "import_mind": "semid.datamodules.mind",
    "fit_quantizer": "semid.rqvae.fit", "Quantizer": "semid.rqvae.frozen", "RqvaeConfig": "semid.rqvae.config",
    "SidTable": "semid.rqvae.sid_table", "TrainingDiverged": "semid.rqvae.finite",
    "SemanticIdCollection": "semid.embeddings.sid_collection", "SidTokenizer": "semid.embeddings.sid_tokenizer",
    "sid_table": "semid.embeddings.sid_tokenizer",
    "HashConfig": "semid.embeddings.hashing", "NgramConfig": "semid.embeddings.ngram",
    "PrefixNgramConfig": "semid.embeddings.ngram", "SpmConfig": "semid.embeddings.spm",
    "RandomSidConfig": "semid.embeddings.random_sid", "HybridConfig": "semid.embeddings.hybrid",
    "UnknownFeatureError": "semid.embeddings.sid_errors", "IdDtypeError": "semid.embeddings.sid_errors",
    "SidSpaceError": "semid.embeddings.sid_errors", "ContentDimError": "semid.embeddings.sid_errors",
    "DeviceMismatchError": "semid.embeddings.sid_errors", "UnknownItemError": "semid.embeddings.sid_errors",
}
__all__ = sorted([*_EXPORTS, "SemidError", "DataError", "FingerprintMismatch", "__version__"])
__getattr__ = lazy_getattr(__name__, _EXPORTS)
