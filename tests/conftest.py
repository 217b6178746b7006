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


@pytest.fixture(scope="session")
def signal_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny corpus with strong planted signals, 4 days: quick to train on."""
    from datamodules.synth import generate, load_synth_config

    cfg = load_synth_config("tiny", ["n_days=4", "impressions_per_day=5000", "content_weight=1.5",
                                     "memorization_weight=1.5", "n_initial_items=800", "n_new_items_per_day=60"])
    return generate(cfg, tmp_path_factory.mktemp("signal") / "corpus")
