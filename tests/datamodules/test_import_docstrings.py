"""The runnable examples in the import modules' docstrings run and give what they show."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["semid.datamodules.log_read", "semid.datamodules.log_rules", "semid.datamodules.log_corpus",
           "semid.datamodules.log_import", "semid.datamodules.mind", "semid.datamodules.fetch",
           "semid.datamodules.import_cli", "semid.datamodules.corpus"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SEMID_PROGRESS", "0")
    monkeypatch.setenv("SEMID_CACHE_DIR", str(tmp_path))
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
