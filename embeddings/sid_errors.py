"""The errors a ``SemanticIdCollection`` raises for bad input: each names the argument and the fix in one line.

All are ``SemidError``s (the CLI prints one line and exits 2) and also the builtin type a Python user expects
(``ValueError``, ``TypeError``, ``RuntimeError``), so ``except ValueError`` keeps working.

>>> from semid.embeddings import UnknownFeatureError
>>> issubclass(UnknownFeatureError, ValueError)
True
"""
from __future__ import annotations

from semid.core.errors import SemidError


class UnknownFeatureError(SemidError, ValueError):
    """A KeyedJaggedTensor key the module was not configured for (``features=``).

    >>> str(UnknownFeatureError("argument 'features': KJT key 'user' is not configured"))
    "argument 'features': KJT key 'user' is not configured"
    """


class IdDtypeError(SemidError, TypeError):
    """Item ids of a non-integer dtype (ids are int32 or int64 tensors / integer arrays).

    >>> issubclass(IdDtypeError, TypeError)
    True
    """


class SidSpaceError(SemidError, ValueError):
    """SIDs (a table, an array or a quantizer's output) whose L or K differ from the tokenizer's.

    >>> issubclass(SidSpaceError, ValueError)
    True
    """


class ContentDimError(SemidError, ValueError):
    """A content embedding of the wrong shape or dimension for the quantizer.

    >>> issubclass(ContentDimError, ValueError)
    True
    """


class DeviceMismatchError(SemidError, RuntimeError):
    """The module's buffers sit on another device than its input.

    >>> issubclass(DeviceMismatchError, RuntimeError)
    True
    """


class UnknownItemError(SemidError, ValueError):
    """An item the mapping has never seen, with no content embedding and no fallback rows (``fallback_rows=0``).

    >>> issubclass(UnknownItemError, ValueError)
    True
    """
