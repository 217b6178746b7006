from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def signal_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny corpus with strong planted signals, 4 days: quick to train on."""
    from datamodules.synth import generate, load_synth_config

    cfg = load_synth_config("tiny", ["n_days=4", "impressions_per_day=5000", "content_weight=1.5",
                                     "memorization_weight=1.5", "n_initial_items=800", "n_new_items_per_day=60"])
    return generate(cfg, tmp_path_factory.mktemp("signal") / "corpus")


FAST = ["trainer.threads=1", "trainer.num_bootstraps=20", "trainer.loggers=[csv]", "data.batch_size=256",
        "ranker.hidden=[64,32]", "ranker.embedding_dim=16"]
