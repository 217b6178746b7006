"""Shared fixtures: a tiny synthetic corpus and tiny trained RQ-VAEs (built once per test session)."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from semid.datamodules.synth import generate, load_synth_config

# smaller than the `tiny` preset: these tests train several models and must stay fast on 2 cores
_CORPUS = ["n_initial_items=700", "n_new_items_per_day=60", "n_days=4", "impressions_per_day=3000",
           "n_users=300", "dim=16"]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_synth_config("tiny", _CORPUS)
    return generate(cfg, tmp_path_factory.mktemp("corpus") / "tiny")


def train_tiny(corpus: Path, out: Path, *overrides: str):  # -> TrainResult
    from semid.rqvae.config import load_rqvae_config
    from semid.rqvae.train import train_rqvae

    cfg = load_rqvae_config("tiny", ["train.steps=30", "train.holdout_items=100", *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_rqvae(corpus, cfg, out, quiet=True)


@pytest.fixture(scope="session")
def tiny_model(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    return train_tiny(tiny_corpus, tmp_path_factory.mktemp("rqvae") / "a")


@pytest.fixture(scope="session")
def other_model(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """Same corpus and config, another seed: a different RQ-VAE."""
    return train_tiny(tiny_corpus, tmp_path_factory.mktemp("rqvae") / "b", "train.seed=1", "train.steps=10")
