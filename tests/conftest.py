"""Shared fixtures: tiny corpora generated on the fly (tests never touch the development data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _environment_restored(request: pytest.FixtureRequest):
    """Each test gets the environment the session started with. Lightning sets MASTER_ADDR, LOCAL_RANK, ...
    for an in-process Trainer and leaves them set; a later test's 2-process subprocess then took itself for
    rank 0 of a launched job and waited for a rank 1 that never came (CI hung 600 s on it). The product's own
    entry points restore them (semid.core.dist_env); this guards tests that drive a Trainer directly."""
    before = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # pytest's own, per phase
    yield
    after = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    log = before.get("SEMID_TEST_ENV_LOG")
    if changed and log:
        with open(log, "a") as f:
            f.write(f"{request.node.nodeid}: {changed}\n")
    for k in after.keys() - before.keys():
        del os.environ[k]
    os.environ.update(before)


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
