"""semid's public Python surface: Semantic IDs in your own TorchRec model, with no semid corpus.

Stage 1, in memory: ``fit_quantizer`` trains a quantizer (the paper's RQ-VAE, or residual k-means) from an
(N, D) array, tensor or Arrow table of item content embeddings, optionally weighted by impressions, and returns a
frozen ``Quantizer`` (``encode``, ``assign``, ``save`` / ``load``). Stage 2: ``SemanticIdCollection`` sits in front
of an ordinary ``EmbeddingBagCollection``, as TorchRec's ``ManagedCollisionCollection`` does, and turns a
``KeyedJaggedTensor`` of raw item ids into the pieces of a representation: random hashing (the baseline),
unigram / n-gram, prefix-n-gram, SentencePiece (SPM) over impression-weighted SIDs, or the random-SID control.
Representations are plain dataclasses (``SpmConfig(vocab_size=1024)``, ``HashConfig(rows=4096)``, ...).

Your own logs become a semid corpus (for ``semid experiment``) with ``import_log`` or ``import_mind``.

    >>> import semid
    >>> sorted(semid.__all__) == sorted(__all__)
    True

Every name here is importable from ``semid`` itself (loaded on first use) and from this module.
"""
from __future__ import annotations

from semid import PUBLIC as SOURCES
from semid.core.errors import DataError, FingerprintMismatch, SemidError
from semid.core.version import __version__
from semid.datamodules.log_import import import_log
from semid.datamodules.mind import import_mind
from semid.embeddings.hashing import HashConfig
from semid.embeddings.hybrid import HybridConfig
from semid.embeddings.ngram import NgramConfig, PrefixNgramConfig
from semid.embeddings.random_sid import RandomSidConfig
from semid.embeddings.sid_collection import SemanticIdCollection
from semid.embeddings.sid_errors import (ContentDimError, DeviceMismatchError, IdDtypeError, SidSpaceError,
                                         UnknownFeatureError, UnknownItemError)
from semid.embeddings.sid_tokenizer import SidTokenizer, sid_table
from semid.embeddings.spm import SpmConfig
from semid.rqvae.config import RqvaeConfig
from semid.rqvae.finite import TrainingDiverged
from semid.rqvae.fit import fit_quantizer
from semid.rqvae.frozen import Quantizer
from semid.rqvae.sid_table import SidTable

# where each public name is defined: one map, semid/__init__.py's, which loads them lazily for ``import semid``
__all__ = sorted(SOURCES)
