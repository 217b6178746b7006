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

# every public name -> the module that defines it: this file loads them on first use (importing semid.api, which
# imports them all, would import torch); semid.api reads the same map
PUBLIC: dict[str, str] = {
    "SemidError": "semid.core.errors", "DataError": "semid.core.errors",
    "FingerprintMismatch": "semid.core.errors", "__version__": "semid.core.version",
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
__all__ = sorted(PUBLIC)
__getattr__ = lazy_getattr(__name__, PUBLIC)
