"""Shared fixtures: tiny corpora generated on the fly (tests never touch the development data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datamodules.synth import generate, load_synth_config

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    return generate(load_synth_config("tiny"), out, preset="tiny")
