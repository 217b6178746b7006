"""Shared fixtures: tiny corpora generated on the fly (tests never touch the development data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _environment_restored(request: pytest.FixtureRequest):
    """Each test gets the environment the session started with: an in-process Trainer sets variables
    (PL_GLOBAL_SEED, OMP_NUM_THREADS, and MASTER_ADDR, LOCAL_RANK, ... where a test drives one directly) and
    leaves them set, and a later test's subprocesses would inherit them. The product's own entry points
    restore the process-group ones (semid.core.dist_env). SEMID_TEST_ENV_LOG=FILE lists what each test changed."""
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
    from semid.datamodules.synth import generate, load_synth_config

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    return generate(load_synth_config("tiny"), out, preset="tiny")


@pytest.fixture(scope="session")
def signal_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny corpus with strong planted signals, 4 days: quick to train on."""
    from semid.datamodules.synth import generate, load_synth_config

    cfg = load_synth_config("tiny", ["n_days=4", "impressions_per_day=5000", "content_weight=1.5",
                                     "memorization_weight=1.5", "n_initial_items=800", "n_new_items_per_day=60"])
    return generate(cfg, tmp_path_factory.mktemp("signal") / "corpus")
