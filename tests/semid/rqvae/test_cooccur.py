"""The behaviour-aware RQ-VAE (issue 33): co-engaged pairs come from the training days only, λ = 0 is the
content-only RQ-VAE bit for bit, and a new item's SID is read from its content embedding alone."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from semid.core.errors import SemidError
from semid.datamodules import Corpus
from semid.datamodules.corpus import CorpusWriter
from semid.rqvae import Rqvae, assign_sids, load_frozen
from semid.rqvae.config import learned_part, load_rqvae_config
from semid.rqvae.cooccur import co_engaged_pairs, info_nce, pair_keys
from semid.rqvae.train import train_quantizer

EVAL_DAY = 3  # the last day of the tiny corpus these tests see (tests/semid/conftest.py: 4 days)
PLANTED = 200  # planted pairs on the evaluation day


def _train(corpus: Path, out: Path, *overrides: str):
    cfg = load_rqvae_config("tiny", [f"train.max_day={EVAL_DAY - 1}", *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_quantizer(corpus, cfg, out, quiet=True)


def _all_codes(result, corpus: Path) -> np.ndarray:
    return result.model.encode(Corpus(corpus).read_items().embedding, 512)


@pytest.fixture(scope="module")
def planted(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The tiny corpus with its evaluation day replaced by clicks on PLANTED item pairs that no earlier day
    co-engaged: (corpus, keys of the planted pairs)."""
    src = Corpus(tiny_corpus)
    items = src.read_items()
    seen = co_engaged_pairs(src, items, None, EVAL_DAY - 1)
    rng = np.random.default_rng(0)
    a = rng.choice(len(items), 4 * PLANTED)
    b = rng.choice(len(items), 4 * PLANTED)
    keys = pair_keys(a, b, len(items))
    fresh = (a != b) & ~np.isin(keys, pair_keys(seen.rows[:, 0], seen.rows[:, 1], len(items)))
    _, first = np.unique(keys[fresh], return_index=True)
    a, b = a[fresh][first][:PLANTED], b[fresh][first][:PLANTED]
    out = tmp_path_factory.mktemp("planted") / "corpus"
    with CorpusWriter(out, items.dim) as w:
        w.write_items(items.item_id, items.embedding, items.first_day)
        for day, t in src.iter_days():
            if day < EVAL_DAY:
                w.write_impressions(day, {c: t[c].to_numpy(zero_copy_only=False) if c != "watch_item_id" else
                                          t[c].fill_null(-1).to_numpy(zero_copy_only=False) for c in t.column_names})
        n = len(a)
        w.write_impressions(EVAL_DAY, {"day": np.full(n, EVAL_DAY, np.int32), "user_id": np.arange(n) + 1,
                                       "watch_item_id": items.item_id[a], "item_id": items.item_id[b],
                                       "click": np.ones(n, np.int8), "engaged": np.ones(n, np.int8)})
        w.close({"source": "test: tiny with planted evaluation-day pairs"})
    return out, pair_keys(a, b, len(items))


def test_pairs_are_read_from_the_training_days_only(tiny_corpus, planted):
    path, keys = planted
    assert Corpus(tiny_corpus).days()[-1] == EVAL_DAY
    c = Corpus(path)
    items = c.read_items()
    train = co_engaged_pairs(c, items, None, EVAL_DAY - 1)
    got = pair_keys(train.rows[:, 0], train.rows[:, 1], len(items))
    assert not np.isin(keys, got).any()
    assert train.days == (0, EVAL_DAY - 1)
    # the same pairs as the original corpus's training days: the evaluation day changed nothing
    orig = co_engaged_pairs(Corpus(tiny_corpus), items, None, EVAL_DAY - 1)
    assert np.array_equal(orig.rows, train.rows) and np.array_equal(orig.counts, train.counts)
    # the planting is real: reading the evaluation day finds every planted pair (so the check above can fail)
    every = co_engaged_pairs(c, items, None, EVAL_DAY)
    assert np.isin(keys, pair_keys(every.rows[:, 0], every.rows[:, 1], len(items))).all()
    # a held-out item never enters a pair
    held = train.rows[:5, 0]
    assert not np.isin(co_engaged_pairs(c, items, None, EVAL_DAY - 1, held).rows, held).any()


def test_the_evaluation_day_cannot_reach_the_model(tiny_corpus, planted, tmp_path):
    """Same config, corpora that differ only on the evaluation day: bit-identical SIDs for every item."""
    args = ("quantizer=rqvae_cooc", "cooccur.weight=1.0", f"cooccur.last_day={EVAL_DAY - 1}")
    a = _train(tiny_corpus, tmp_path / "orig", *args)
    b = _train(planted[0], tmp_path / "planted", *args)
    assert np.array_equal(_all_codes(a, tiny_corpus), _all_codes(b, tiny_corpus))
    assert a.health["quantizer"]["cooccur_days"] == [0, EVAL_DAY - 1]
    for pa_, pb_ in zip(a.model.model.parameters(), b.model.model.parameters()):
        assert torch.equal(pa_, pb_)


def test_lambda_zero_is_the_content_rqvae_and_lambda_shapes_it(tiny_corpus, tmp_path):
    plain = _train(tiny_corpus, tmp_path / "plain")
    zero = _train(tiny_corpus, tmp_path / "zero", "quantizer=rqvae_cooc", "cooccur.weight=0", f"cooccur.last_day={EVAL_DAY - 1}")
    one = _train(tiny_corpus, tmp_path / "one", "quantizer=rqvae_cooc", "cooccur.weight=1", f"cooccur.last_day={EVAL_DAY - 1}")
    assert np.array_equal(_all_codes(plain, tiny_corpus), _all_codes(zero, tiny_corpus))
    assert not np.array_equal(_all_codes(plain, tiny_corpus), _all_codes(one, tiny_corpus))
    assert zero.model.fingerprint != plain.model.fingerprint  # another model name, the same bits


def test_a_new_item_gets_its_sid_from_its_content_alone(tiny_corpus, tmp_path):
    # encode takes the content embedding and nothing else, for every quantizer kind
    assert list(inspect.signature(Rqvae.encode).parameters) == ["self", "x"]
    res = _train(tiny_corpus, tmp_path / "cooc", "quantizer=rqvae_cooc", "cooccur.weight=1", f"cooccur.last_day={EVAL_DAY - 1}")
    table = assign_sids(res.out, tiny_corpus, tmp_path / "sids.parquet").table
    items = Corpus(tiny_corpus).read_items()
    frozen = load_frozen(res.out / "rqvae.pt")
    new = np.flatnonzero(items.first_day == EVAL_DAY)  # no clicks before the evaluation day
    assert len(new) > 0
    rows = items.index_of(table.item_id)
    by_row = np.empty_like(table.codes)
    by_row[rows] = table.codes
    # the table's SID of a new item is the frozen model's encoding of its content embedding, computed alone
    for r in new[:20]:
        assert np.array_equal(by_row[r], frozen.encode(items.embedding[r:r + 1], 1)[0])


def test_config_requires_the_training_days_and_keeps_plain_fingerprints():
    with pytest.raises((SemidError, ValueError), match="cooccur.last_day must be set"):
        load_rqvae_config("tiny", ["quantizer=rqvae_cooc"])
    plain = load_rqvae_config("tiny")
    assert "cooccur" not in learned_part(plain) and "quantizer" not in learned_part(plain)
    cooc = load_rqvae_config("tiny", ["quantizer=rqvae_cooc", "cooccur.last_day=3"])
    assert learned_part(cooc)["cooccur"]["last_day"] == 3


def test_info_nce_prefers_the_partner():
    torch.manual_seed(0)
    a = torch.randn(16, 8)
    assert info_nce(a, a, 0.1) < info_nce(a, torch.randn(16, 8), 0.1)
