"""semid: Semantic IDs for ranking models (Singh et al., "Better Generalization with Semantic IDs")."""
from semid.core.errors import DataError, FingerprintMismatch, SemidError

__version__ = "0.1.0"
__all__ = ["SemidError", "DataError", "FingerprintMismatch", "__version__"]
