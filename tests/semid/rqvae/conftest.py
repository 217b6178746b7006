"""Residual k-means models on the tiny corpus of tests/semid/conftest.py, trained once per session."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

# a few seconds each: fewer draws and progressive steps than the tiny_rqkmeans preset
RQK_FAST = ["train.holdout_items=80", "rqkmeans.fit_items=4096", "rqkmeans.dim_steps=4", "rqkmeans.iters=8"]


def train_rqkmeans(corpus: Path, out: Path, *overrides: str):  # -> TrainResult
    from semid.rqvae.config import load_rqvae_config
    from semid.rqvae.train import train_quantizer

    cfg = load_rqvae_config("tiny_rqkmeans", [*RQK_FAST, *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_quantizer(corpus, cfg, out, quiet=True)


@pytest.fixture(scope="session")
def plain(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """Residual k-means, L=3, K=16."""
    return train_rqkmeans(tiny_corpus, tmp_path_factory.mktemp("rqk") / "plain")


@pytest.fixture(scope="session")
def balanced(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same, balanced."""
    return train_rqkmeans(tiny_corpus, tmp_path_factory.mktemp("rqk") / "balanced", "rqkmeans.balanced=true")


@pytest.fixture(scope="session")
def roomy(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """Balanced, K=32: its largest SID holds fewer items than K, so a collision suffix can number them."""
    return train_rqkmeans(tiny_corpus, tmp_path_factory.mktemp("rqk") / "roomy", "rqkmeans.balanced=true",
                          "model.codebook_size=32")
