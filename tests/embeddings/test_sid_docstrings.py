"""The runnable examples in the SID module's docstrings (every public name has one) run and give what they show."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["semid.embeddings.sid_collection", "semid.embeddings.sid_tokenizer", "semid.embeddings.sid_errors",
           "semid.bench.sid_module"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_every_public_name_has_an_example() -> None:
    import semid.embeddings as room

    names = ["SemanticIdCollection", "SidTokenizer", "sid_table", "UnknownFeatureError", "IdDtypeError",
             "SidSpaceError", "ContentDimError", "DeviceMismatchError", "UnknownItemError"]
    for name in names:
        assert name in room.__all__ and ">>>" in (getattr(room, name).__doc__ or ""), name
    cls = room.SemanticIdCollection
    for method in ("from_sids", "from_tokenizer", "from_token_cache", "embedding_bag_configs", "rows_of",
                   "feature_names", "stats", "save"):
        assert ">>>" in (getattr(cls, method).__doc__ or ""), method
