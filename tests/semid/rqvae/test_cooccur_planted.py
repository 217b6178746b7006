"""The planted-knob check of the behaviour-aware RQ-VAE (issue 33), both directions, on tiny corpora.

The judge is a ranker that sees only SIDs: the length of the SID prefix a candidate shares with its watch
item scores each impression of the evaluation day (a day no Stage-1 model saw), and its click AUC is the
number. With co-engagement clusters planted (items of a hidden cluster, across topics, get clicked
together), the SIDs shaped by co-engaged pairs must score better than content-only SIDs; without the knob,
behaviour must not cost the SIDs more than a small margin.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from semid.datamodules import Corpus
from semid.datamodules.synth import generate, load_synth_config
from semid.rqvae.config import load_rqvae_config
from semid.rqvae.train import train_quantizer

DAYS = ["n_days=4", "impressions_per_day=6000", "n_initial_items=1000", "n_new_items_per_day=60"]
LAST_TRAIN_DAY = 2  # day 3 is the evaluation day


def _corpus(tmp: Path, knob: bool) -> Path:
    # a faint cluster direction in the content (norm 0.3 against the topic tree's 1.0, 0.6, 0.35 and noise 0.3): a
    # quantizer spending its codes on reconstruction leaves it to the fine levels, co-engaged pairs lift it
    extra = ["coengage_clusters=8", "coengage_weight=1.5", "coengage_content=0.3"] if knob else []
    return generate(load_synth_config("tiny", DAYS + extra), tmp / ("knob" if knob else "plain"))


def _codes(corpus: Path, out: Path, *overrides: str) -> np.ndarray:
    cfg = load_rqvae_config("tiny", [f"train.max_day={LAST_TRAIN_DAY}", "train.steps=200", "train.holdout_items=50",
                                     *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train_quantizer(corpus, cfg, out, quiet=True)
    return res.model.encode(Corpus(corpus).read_items().embedding, 512)


def prefix_ranker_auc(corpus: Path, codes: np.ndarray) -> float:
    """Click AUC on the evaluation day of score = length of the SID prefix candidate and watch item share."""
    c = Corpus(corpus)
    items = c.read_items()
    t = c.read_day(c.days()[-1], columns=["watch_item_id", "item_id", "click"])
    has = t["watch_item_id"].is_valid().to_numpy(zero_copy_only=False)
    w = items.index_of(t["watch_item_id"].fill_null(0).to_numpy(zero_copy_only=False)[has])
    i = items.index_of(t["item_id"].to_numpy(zero_copy_only=False)[has])
    same = np.cumprod(codes[w] == codes[i], axis=1).sum(axis=1)
    click = t["click"].to_numpy(zero_copy_only=False)[has]
    return float(binary_auroc(torch.tensor(same, dtype=torch.float32), torch.tensor(click.astype(np.int64))))


# Measured 2026-12-08 (2-core machine, tiny L=3, K=16, 200 steps, λ=1): with clusters content 0.6696, cooc 0.6625
# (content 0.6678 vs 0.6654 without coengage_content); without them 0.6853 vs 0.6859. The "gain" direction does
# not hold yet: strict, so it fails the day it starts to hold and the mark must go.
GAIN_NOT_MET = pytest.mark.xfail(strict=True, reason="issue 33: the behaviour-aware SIDs do not beat content-only "
                                 "SIDs on the planted clusters yet (measured: 0.6625 vs 0.6696)")


@pytest.mark.parametrize("knob", [pytest.param(True, marks=GAIN_NOT_MET), False], ids=["clusters", "no-clusters"])
def test_behaviour_aware_sids_gain_where_behaviour_is_planted(tmp_path, knob):
    corpus = _corpus(tmp_path, knob)
    content = prefix_ranker_auc(corpus, _codes(corpus, tmp_path / "content"))
    cooc = prefix_ranker_auc(corpus, _codes(corpus, tmp_path / "cooc", "quantizer=rqvae_cooc", "cooccur.weight=1",
                                             f"cooccur.last_day={LAST_TRAIN_DAY}"))
    print(f"knob={knob}: content {content:.4f}, cooc {cooc:.4f}")
    if knob:
        assert cooc > content + 0.01
    else:
        assert cooc > content - 0.01
