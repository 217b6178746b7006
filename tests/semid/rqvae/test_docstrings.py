"""The runnable examples in Stage 1's in-memory API docstrings run and give what they show."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["semid.rqvae.config", "semid.rqvae.fit", "semid.rqvae.frozen", "semid.rqvae.inputs",
           "semid.rqvae.assign_arrays", "semid.rqvae.rqkmeans_train", "semid.rqvae.runs", "semid.rqvae.finite",
           "semid.rqvae.sid_table"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMID_PROGRESS", "0")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
