"""semid: Semantic IDs for ranking models (Singh et al., "Better Generalization with Semantic IDs")."""
from semid.core.errors import DataError, FingerprintMismatch, SemidError
from semid.core.version import __version__

__all__ = ["SemidError", "DataError", "FingerprintMismatch", "__version__"]
