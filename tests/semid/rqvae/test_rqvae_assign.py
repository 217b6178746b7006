"""Frozen assignment: deterministic whatever the batch size, additive on --update, tied to its model."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from semid.datamodules.corpus import Corpus
from semid.core.errors import FingerprintMismatch, SemidError
from semid.rqvae.assign import assign_sids
from semid.rqvae.config import load_rqvae_config, rqvae_fingerprint
from semid.rqvae.frozen import load_frozen
from semid.rqvae.sid_table import SidTable, read_sid_table, write_sid_table


def test_sids_do_not_depend_on_batch_size_or_order(tiny_model, tiny_corpus: Path) -> None:
    x = Corpus(tiny_corpus).read_items().embedding[:120]
    m = tiny_model.model
    ref = m.encode(x, batch_size=len(x))
    for bs in (1, 7, 64):
        assert np.array_equal(m.encode(x, batch_size=bs), ref)
    perm = np.random.default_rng(0).permutation(len(x))
    assert np.array_equal(m.encode(x[perm], batch_size=33), ref[perm])
    assert np.array_equal(load_frozen(tiny_model.out).encode(x, batch_size=5), ref)  # reloaded export agrees


def test_fingerprint_is_config_corpus_and_seed() -> None:
    cfg = load_rqvae_config("tiny")
    fp = rqvae_fingerprint(cfg, "corpusA")
    assert rqvae_fingerprint(cfg, "corpusA") == fp
    assert rqvae_fingerprint(cfg, "corpusB") != fp
    assert rqvae_fingerprint(replace(cfg, train=replace(cfg.train, seed=1)), "corpusA") != fp
    assert rqvae_fingerprint(replace(cfg, model=replace(cfg.model, levels=4)), "corpusA") != fp
    # how a run is watched is not what it learns
    assert rqvae_fingerprint(replace(cfg, run=replace(cfg.run, logger="wandb")), "corpusA") == fp


def test_assign_then_update_adds_only_missing_items(tiny_model, tiny_corpus: Path, tmp_path: Path) -> None:
    full = assign_sids(tiny_model.out, tiny_corpus, tmp_path / "sids.parquet").table
    items = Corpus(tiny_corpus).read_items()
    assert len(full) == len(items) and np.array_equal(full.item_id, items.item_id)
    assert full.rqvae_fingerprint == tiny_model.model.fingerprint
    # an older table that lacks the items introduced on later days
    old_rows = np.flatnonzero(items.first_day[np.searchsorted(items.item_id, full.item_id)] == 0)
    old = SidTable(full.item_id[old_rows], full.codes[old_rows], full.codebook_size, full.rqvae_fingerprint)
    write_sid_table(old, tmp_path / "old.parquet")
    r = assign_sids(tiny_model.out, tiny_corpus, tmp_path / "old.parquet", update=True)
    assert r.added == len(full) - len(old_rows) > 0
    again = read_sid_table(tmp_path / "old.parquet", expect_rqvae=tiny_model.model.fingerprint)
    assert np.array_equal(again.item_id, full.item_id) and np.array_equal(again.codes, full.codes)
    # the same command again (e.g. after a kill that landed just after the rename): up to date, nothing encoded
    same = assign_sids(tiny_model.out, tiny_corpus, tmp_path / "sids.parquet")
    assert same.chunks == 0 and same.added == 0 and np.array_equal(same.table.codes, full.codes)
    write_sid_table(old, tmp_path / "partial.parquet")  # a table that is not this command's result is kept
    with pytest.raises(SemidError, match="already exists"):
        assign_sids(tiny_model.out, tiny_corpus, tmp_path / "partial.parquet")


def test_sids_of_another_model_are_refused(tiny_model, other_model, tiny_corpus: Path, tmp_path: Path) -> None:
    assert other_model.model.fingerprint != tiny_model.model.fingerprint
    out = tmp_path / "sids.parquet"
    assign_sids(tiny_model.out, tiny_corpus, out)
    with pytest.raises(FingerprintMismatch, match="re-run `semid sids assign`"):
        read_sid_table(out, expect_rqvae=other_model.model.fingerprint)
    with pytest.raises(FingerprintMismatch):
        assign_sids(other_model.out, tiny_corpus, out, update=True)


def test_tampered_export_is_refused(tiny_model, tmp_path: Path) -> None:
    import torch

    payload = torch.load(tiny_model.out / "rqvae.pt", weights_only=True)
    payload["config"]["model"]["beta"] = 0.5  # config no longer matches the recorded fingerprint
    torch.save(payload, tmp_path / "rqvae.pt")
    with pytest.raises(SemidError, match="does not match its config"):
        load_frozen(tmp_path)
    with pytest.raises(SemidError, match="does not exist"):
        load_frozen(tmp_path / "nope")


def test_wrong_embedding_dimension_is_refused(tiny_model) -> None:
    with pytest.raises(SemidError, match="expects dimension"):
        tiny_model.model.encode(np.zeros((3, 5), np.float32))


def test_health_summary_is_written(tiny_model) -> None:
    import json

    h = json.loads((tiny_model.out / "health.json").read_text())
    assert h["fingerprint"] == tiny_model.model.fingerprint
    levels = h["levels"]
    assert len(h["all_items"]["utilisation_per_level"]) == levels
    assert min(h["all_items"]["utilisation_per_level"]) >= 0.9  # K = 16 on ~900 items
    assert 0 < h["heldout"]["relative_error"] < 1
    assert len(h["train"]["dead_code_resets_per_level"]) == levels
    assert 0 < h["heldout"]["unique_sid_fraction"] <= 1 and h["heldout"]["largest_collision_group"] >= 1
    # train.holdout_items=100 of 880 items, scaled down to MAX_HOLDOUT_SHARE (10%)
    assert h["heldout"]["items"] == 88 and h["all_items"]["items"] == 880


def test_fingerprint_does_not_depend_on_spelling_out_the_input_dim(tiny_model, tiny_corpus: Path) -> None:
    cfg = load_rqvae_config("tiny", ["train.steps=30", "train.holdout_items=100"])
    corpus_fp = Corpus(tiny_corpus).fingerprint
    assert rqvae_fingerprint(cfg, corpus_fp) == tiny_model.model.fingerprint  # what a caller can predict
    assert rqvae_fingerprint(replace(cfg, model=replace(cfg.model, input_dim=16)), corpus_fp) == \
        tiny_model.model.fingerprint
