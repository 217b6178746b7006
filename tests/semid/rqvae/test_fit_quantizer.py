"""Stage 1 in memory (``fit_quantizer``, ``Quantizer``): arrays, tensors and Arrow tables in, SIDs out, the same
model as ``semid sids train`` on a corpus holding the same items and impressions."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from semid.core.errors import SemidError
from semid.core.fingerprint import code_fingerprint
from semid.datamodules import open_corpus
from semid.rqvae import (Quantizer, RqvaeConfig, TrainingDiverged, assign_sids, fit_quantizer, load_rqvae_config,
                         rqvae_fingerprint)
from semid.rqvae.assign_arrays import arrays_fingerprint
from semid.rqvae.config import ModelConfig
from semid.rqvae.data import impression_counts
from semid.rqvae.fit import ArrayDataModule, data_module_args
from semid.rqvae.frozen import STAGE1_ROOMS, with_input_dim
from tests.semid.rqvae.conftest import RQK_FAST

# a few seconds on 2 cores: the tiny preset's network, fewer steps
SMALL = dict(levels=2, codebook_size=8, hidden_dim=32, latent_dim=8, steps=15, batch_size=128, kmeans_init_items=256,
             holdout_items=0)


def _fit(*args, **kwargs) -> Quantizer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_quantizer(*args, **kwargs)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    emb = (centres[rng.integers(0, 12, 500)] + 0.1 * rng.normal(size=(500, 16))).astype(np.float32)
    weights = rng.integers(0, 20, 500).astype(np.float64)  # some items never impressed
    return emb, weights


def test_numpy_torch_and_arrow_give_one_model(data: tuple[np.ndarray, np.ndarray]) -> None:
    emb, w = data
    cfg = RqvaeConfig(**SMALL)
    q = _fit(emb, cfg, weights=w)
    codes = q.encode(emb)
    assert codes.shape == (500, 2) and codes.dtype == np.int32 and codes.max() < 8
    assert len({tuple(c) for c in codes}) > 8  # more than one level's worth of distinct SIDs
    # the fingerprints semid records: config + data (ids, embeddings, weights) + seed, and the code
    data_fp = arrays_fingerprint(np.arange(500), emb, w)
    assert q.corpus_fingerprint == q.data_fingerprint == data_fp
    assert q.fingerprint == rqvae_fingerprint(with_input_dim(cfg, 16), data_fp)
    assert q.code is not None and q.code["code_fingerprint"] == code_fingerprint(*STAGE1_ROOMS)

    t = _fit(torch.from_numpy(emb), cfg, weights=torch.from_numpy(w))
    assert t.fingerprint == q.fingerprint and np.array_equal(t.encode(emb), codes)
    as_tensor = t.encode(torch.from_numpy(emb))
    assert as_tensor.dtype == torch.int64 and np.array_equal(as_tensor.numpy(), codes)

    # an Arrow table of (item_id, embedding) with an impressions column, rows shuffled: items are taken by id
    order = np.random.default_rng(3).permutation(500)
    table = pa.table({"item_id": pa.array(order, pa.int64()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb[order].reshape(-1)), 16),
                      "impressions": pa.array(w[order])})
    a = _fit(table, cfg, weights="impressions")
    assert a.fingerprint == q.fingerprint and np.array_equal(a.encode(emb), codes)


def test_weights_draw_the_training_sample(data: tuple[np.ndarray, np.ndarray]) -> None:
    emb, w = data
    cfg = with_input_dim(RqvaeConfig(**{**SMALL, "holdout_items": 20}), 16)
    dm = ArrayDataModule(np.arange(500), emb, w, **data_module_args(cfg))
    dm.setup()
    assert dm.sample is not None and dm.pool is not None
    trained = set(dm.pool.rows.tolist())
    assert trained == set(np.flatnonzero(w > 0).tolist()) - set(dm.sample.holdout_rows.tolist())
    # sampling weights are the impressions' shares
    assert np.allclose(dm.pool.weights, w[dm.pool.rows] / w[dm.pool.rows].sum())
    unweighted = _fit(emb, RqvaeConfig(**SMALL))
    assert unweighted.fingerprint != _fit(emb, RqvaeConfig(**SMALL), weights=w).fingerprint


def test_save_load_round_trip(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    emb, w = data
    for cfg in (RqvaeConfig(**SMALL), RqvaeConfig(quantizer="rqkmeans", levels=2, codebook_size=8, fit_items=2000,
                                                  holdout_items=0)):
        q = _fit(emb, cfg, weights=w)
        path = q.save(tmp_path / f"{cfg.quantizer}.pt")
        back = Quantizer.load(path)
        assert np.array_equal(back.encode(emb), q.encode(emb))
        assert (back.fingerprint, back.corpus_fingerprint, back.code) == (q.fingerprint, q.corpus_fingerprint, q.code)
        assert back.quantizer == cfg.quantizer and back.path == path
        # into a directory: <dir>/rqvae.pt, what `semid sids assign --model <dir>` reads
        d = tmp_path / f"dir-{cfg.quantizer}"
        d.mkdir()
        assert q.save(d) == d / "rqvae.pt" and Quantizer.load(d).fingerprint == q.fingerprint


def test_assign_in_memory(data: tuple[np.ndarray, np.ndarray]) -> None:
    emb, w = data
    q = _fit(emb, RqvaeConfig(**{**SMALL, "codebook_size": 64}), weights=w)  # room to number collisions
    ids = np.arange(1000, 1500)[::-1].copy()  # any order: the table is by id
    table = q.assign(ids, emb)
    assert np.array_equal(table.item_id, np.arange(1000, 1500))
    assert np.array_equal(table.lookup(ids), q.encode(emb))
    assert table.rqvae_fingerprint == q.fingerprint and table.levels == 2
    suffixed = q.assign(ids, emb, collision_suffix=True)
    assert suffixed.levels == 3 and len({tuple(c) for c in suffixed.codes}) == 500  # every SID unique
    assert np.array_equal(suffixed.codes[:, :2], table.codes)
    with pytest.raises(SemidError, match="item_ids: 1 duplicate id"):
        q.assign(np.r_[ids[:-1], ids[0]], emb)
    with pytest.raises(SemidError, match="expects dimension 16"):
        q.assign(ids, emb[:, :8])


def test_corpus_path_is_the_in_memory_path(tiny_corpus: Path, tiny_model, roomy, tmp_path: Path) -> None:
    """``semid sids train`` and ``sids assign`` on a corpus give the SIDs ``fit_quantizer`` / ``assign`` give on
    the corpus's items and impression counts: one code path."""
    corpus = open_corpus(tiny_corpus)
    items = corpus.read_items()
    counts = impression_counts(corpus, items)
    cfg = load_rqvae_config("tiny", ["train.steps=30", "train.holdout_items=100"])  # tiny_model's config
    q = _fit(items.embedding, cfg, weights=counts, item_ids=items.item_id)
    ref = tiny_model.model
    for a, b in zip(q.model.state_dict().values(), ref.model.state_dict().values()):
        assert torch.equal(a, b)
    assert np.array_equal(q.encode(items.embedding), ref.encode(items.embedding))
    table = assign_sids(tiny_model.out, tiny_corpus, tmp_path / "sids.parquet").table
    mine = q.assign(items.item_id, items.embedding)
    assert np.array_equal(mine.item_id, table.item_id) and np.array_equal(mine.codes, table.codes)

    # residual k-means, balanced, and the collision suffix (conftest's `roomy`)
    rcfg = load_rqvae_config("tiny_rqkmeans", [*RQK_FAST, "rqkmeans.balanced=true", "model.codebook_size=32"])
    k = _fit(items.embedding, rcfg, weights=counts, item_ids=items.item_id)
    assert np.array_equal(k.encode(items.embedding), roomy.model.encode(items.embedding))
    table = assign_sids(roomy.out, tiny_corpus, tmp_path / "suffix.parquet", collision_suffix=True).table
    mine = k.assign(items.item_id, items.embedding, collision_suffix=True)
    assert np.array_equal(mine.codes, table.codes) and mine.levels == 4


def test_config_keywords() -> None:
    cfg = RqvaeConfig(levels=3, codebook_size=64, steps=300, kmeans_init_items=1024, lr=0.01, threads=2)
    assert (cfg.model.levels, cfg.model.codebook_size, cfg.train.steps, cfg.train.lr, cfg.run.threads) == \
        (3, 64, 300, 0.01, 2)
    assert RqvaeConfig(model=ModelConfig(levels=5), codebook_size=4).model == ModelConfig(levels=5, codebook_size=4)
    for kwargs, message in [({"levels": 0}, "model.levels must be >= 1"),
                            ({"codebook_size": 64, "kmeans_init_items": 32}, "train.kmeans_init_items"),
                            ({"levels": "3"}, "field 'model.levels': expected int"),
                            ({"lerning_rate": 1}, "field 'lerning_rate': unknown key"),
                            ({"quantizer": "kmeans"}, "quantizer must be one of")]:
        with pytest.raises(SemidError, match=message):
            RqvaeConfig(**kwargs)


def test_bad_inputs_name_the_argument(data: tuple[np.ndarray, np.ndarray]) -> None:
    emb, w = data
    cfg = RqvaeConfig(**SMALL)
    nan = emb.copy()
    nan[7, 3] = np.nan
    for args, kwargs, message in [
            ((emb[0], cfg), {}, r"embeddings: expected a 2-D \(N, D\) array"),
            ((nan, cfg), {}, "embeddings: 1 row.* NaN or inf .*row 7"),
            (([[1.0, 2.0]], cfg), {}, "data: expected an .* got list"),
            ((emb, cfg), {"weights": w[:10]}, r"weights: expected one weight per item, shape \(500,\)"),
            ((emb, cfg), {"weights": np.zeros(500)}, "weights: weights must be finite and >= 0 with at least one > 0"),
            ((emb, cfg), {"item_ids": np.zeros(500, np.int64)}, "item_ids: 499 duplicate id"),
            ((emb, cfg), {"weights": "impressions"}, "weights: a column name needs an Arrow table"),
            ((emb, RqvaeConfig(**{**SMALL, "devices": 2})), {}, "run.devices"),
    ]:
        with pytest.raises(SemidError, match=message):
            _fit(*args, **kwargs)
    from semid.rqvae.config import TrainConfig

    day = RqvaeConfig(train=TrainConfig(min_day=3, steps=15, batch_size=128, kmeans_init_items=256, holdout_items=0),
                      levels=2, codebook_size=8)
    with pytest.raises(SemidError, match="train.min_day.*pass weights="):
        _fit(emb, day)


@pytest.mark.parametrize("quantizer", ["rqvae", "rqkmeans"])
def test_huge_embeddings_stop_training(data: tuple[np.ndarray, np.ndarray], quantizer: str) -> None:
    """Issue 32 class 1: finite embeddings of magnitude 1e30 overflow float32 inside training; the trainer stops
    with one line naming where and a fix instead of returning a NaN model that gives every item one SID."""
    emb, _ = data
    cfg = RqvaeConfig(**SMALL) if quantizer == "rqvae" else \
        RqvaeConfig(quantizer="rqkmeans", levels=2, codebook_size=8, fit_items=2000, holdout_items=0)
    with pytest.raises(TrainingDiverged) as e:
        _fit(emb * np.float32(1e30), cfg)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and re.search(r"magnitudes up to \de\+30; normalise them", msg)
    where = "RQ-VAE training diverged at step 1 of 15: the loss is inf" if quantizer == "rqvae" else \
        "residual k-means diverged at level 0 of 2"
    assert msg.startswith(where)
