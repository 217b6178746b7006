"""The stages after generation in bounded memory (issue 19): the RQ-VAE's training pool, SID assignment in file
order, SPM's bounded training sample, chunked token caches, Dense Input's memory check. Each gives what the
whole-corpus version gives where that fits, and stays bounded where it does not."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import semid.datamodules.corpus as corpus_mod
import semid.datamodules.ranking as ranking_mod
import semid.embeddings.spm as spm_mod
import semid.embeddings.token_cache as token_cache_mod
from semid.datamodules import Corpus, RankingDataConfig, RankingDataModule
from semid.embeddings import build_token_cache, load_representation_config
from semid.embeddings.spm import SpmConfig, sample_training_sids, train_spm, unique_sids
from semid.cli import main
from semid.core.errors import SemidError
from semid.rqvae import SidTable
from semid.rqvae.data import RqvaeDataModule, impression_counts, split_items, training_pool


@pytest.fixture(scope="module")
def tiny_model(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):  # -> TrainResult
    from semid.rqvae import load_rqvae_config, train_rqvae

    cfg = load_rqvae_config("tiny", ["train.steps=30", "train.holdout_items=100", "model.codebook_size=64"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_rqvae(tiny_corpus, cfg, tmp_path_factory.mktemp("rqvae") / "m", quiet=True)


@pytest.fixture(scope="module")
def tiny_sids(tiny_model, tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semid.rqvae import assign_sids

    return assign_sids(tiny_model.out, tiny_corpus, tmp_path_factory.mktemp("sids") / "sids.parquet").path


def _dm(corpus: Path, **kw: object) -> RqvaeDataModule:
    dm = RqvaeDataModule(Corpus(corpus), batch_size=64, steps=5, first_batch_size=128, holdout_items=50, seed=3,
                         **kw)  # type: ignore[arg-type]
    dm.setup()
    return dm


def test_rqvae_batches_without_the_full_matrix_are_the_same(tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_mod, "ITEM_BATCH_ROWS", 200)
    full, lean = _dm(tiny_corpus), _dm(tiny_corpus, all_embeddings=False)
    assert full.items.embedding is not None and lean.items.embedding is None
    assert not lean.pool.drawn and len(lean._embedding) == len(lean.sample.train_rows)  # noqa: SLF001
    for a, b in zip(full.train_dataloader(), lean.train_dataloader()):
        assert torch.equal(a, b)
    assert np.array_equal(full.holdout_embedding, lean.holdout_embedding)


def test_a_bounded_pool_draws_by_impressions_deterministically(tiny_corpus: Path) -> None:
    c = Corpus(tiny_corpus)
    counts = impression_counts(c, c.read_items(embeddings=False))
    sample = split_items(counts, 0, seed=0)
    pool = training_pool(sample, dim=32, seed=0, max_bytes=4 * 32 * 500)  # room for 500 of ~1,600 items
    again = training_pool(sample, dim=32, seed=0, max_bytes=4 * 32 * 500)
    assert pool.drawn and len(pool.rows) <= 500 and np.array_equal(pool.rows, again.rows)
    assert np.isclose(pool.weights.sum(), 1) and set(pool.rows) <= set(sample.train_rows)
    # the pool's weight of the most impressed tenth of items is close to its impression share
    top = sample.train_rows[np.argsort(-counts[sample.train_rows])[:len(sample.train_rows) // 10]]
    share = counts[top].sum() / counts[sample.train_rows].sum()
    assert abs(pool.weights[np.isin(pool.rows, top)].sum() - share) < 0.05
    dm = _dm(tiny_corpus, all_embeddings=False, pool_bytes=4 * 32 * 500)
    assert dm.pool.drawn and dm._embedding.shape == (len(dm.pool.rows), 32)  # noqa: SLF001
    rows = dm.pool.rows[:5]
    assert np.array_equal(dm._embedding[:5].numpy(), c.read_items().embedding[rows])  # noqa: SLF001


def test_assignment_in_file_order_matches_encoding_every_item(tiny_model, tiny_corpus: Path, tmp_path: Path) -> None:
    from semid.rqvae import assign_sids
    from semid.rqvae.assign import number_collisions, reconstruction_distance

    items = Corpus(tiny_corpus).read_items()
    assert not Corpus(tiny_corpus).item_order.sorted_file  # the synthetic generator shuffles ids within a day
    r = assign_sids(tiny_model.out, tiny_corpus, tmp_path / "s.parquet", chunk_items=333, collision_suffix=True)
    codes = tiny_model.model.encode(items.embedding)
    dist = reconstruction_distance(tiny_model.model, items.embedding, np.arange(len(items)), codes, 64)
    assert r.chunks == -(-len(items) // 333)
    assert np.array_equal(r.table.item_id, items.item_id)
    assert np.array_equal(r.table.codes[:, :-1], codes)
    assert np.array_equal(r.table.codes[:, -1], number_collisions(codes, dist, items.item_id))


def test_unique_sids_is_numpy_unique_by_rows() -> None:
    codes = np.random.default_rng(0).integers(0, 256, (5000, 4)).astype(np.int32)
    codes[::7] = codes[0]
    ref, ref_inv = np.unique(codes, axis=0, return_inverse=True)
    got, inv = unique_sids(codes, 256)
    assert np.array_equal(got, ref) and np.array_equal(inv, ref_inv.reshape(-1)) and got.dtype == codes.dtype
    wide = np.random.default_rng(1).integers(0, 2048, (300, 8))  # 88 bits: np.unique's own path
    assert np.array_equal(unique_sids(wide, 2048)[0], np.unique(wide, axis=0))


def test_spm_trains_on_a_bounded_deterministic_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    n, k = 6000, 16
    codes = rng.integers(0, k, (n, 4)).astype(np.int32)
    ids = np.arange(n, dtype=np.int64) + 10
    table = SidTable(ids, codes, k, "fp-rqvae", "fp-corpus")
    imp = (1000 / np.arange(1, n + 1) ** 1.1).astype(np.int64) + 1  # Zipf
    uniq, inv = unique_sids(codes, k)
    weight = np.bincount(inv, weights=imp).astype(np.int64)
    srt, w = sample_training_sids(uniq, weight, max_sids=800)
    assert len(srt) <= 800 and w.sum() == 800 and np.all(np.diff(unique_sids(srt, k)[1]) > 0)  # kept in order
    assert np.array_equal(sample_training_sids(uniq, weight, max_sids=800)[0], srt)
    head = np.argsort(-weight)[:20]  # the head is kept
    assert set(map(tuple, uniq[head])) <= set(map(tuple, srt))
    cfg = SpmConfig(vocab_size=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = train_spm(cfg, table, ids, imp)
        monkeypatch.setattr(spm_mod, "MAX_TRAINING_SIDS", 800)
        a, b = train_spm(cfg, table, ids, imp), train_spm(cfg, table, ids, imp)
    # deterministic (the proto itself names its temporary input file), and really trained on the sample
    assert _pieces(a, table) == _pieces(b, table) != _pieces(exact, table)
    assert sum(len(p) == 1 for p, _ in _pieces(a, table)) == 4 * k  # every impressed symbol kept its own row


def _pieces(model: spm_mod.SpmModel, table: SidTable) -> list[tuple[str, float]]:
    tok = spm_mod.SpmTokenizer(SpmConfig())
    tok._set(spm_mod.SidSpace(table.levels, table.codebook_size, table.space_fingerprint), model)  # noqa: SLF001
    sp = tok.processor
    return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(1, sp.get_piece_size())]


@pytest.mark.parametrize("rep", ["hash_8k", "bigram", "spm_1k"])
def test_token_caches_built_in_chunks_are_identical(rep: str, tiny_sids: Path, tiny_corpus: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from semid.datamodules import corpus_impressions
    from semid.rqvae import read_sid_table

    sids = read_sid_table(tiny_sids)
    ids = Corpus(tiny_corpus).read_item_ids()
    imp = corpus_impressions(Corpus(tiny_corpus), ids)
    cfg = load_representation_config(rep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = build_token_cache(cfg, sids, ids, imp)
        monkeypatch.setattr(token_cache_mod, "TOKENIZE_CHUNK", 101)
        monkeypatch.setattr(spm_mod, "_ENCODE_BATCH", 37)
        chunked = build_token_cache(cfg, sids, ids, imp)
    assert np.array_equal(chunked.item_id, whole.item_id) and len(chunked.jagged) == len(whole.jagged) > 0
    for a, b in zip(chunked.jagged, whole.jagged):
        assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.values, b.values)


def test_dense_input_prints_its_need_and_refuses_what_cannot_fit(tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    n, dim = len(Corpus(tiny_corpus).read_item_ids()), 32
    need = n * dim * 4
    dm = RankingDataModule(tiny_corpus, RankingDataConfig())
    dm.setup()
    assert f"{n:,} x {dim} float32 = {need / 1e9:.2f} GB per process" in capsys.readouterr().out
    frame = dm.day_frame(1)
    ref = dm.make_batch(frame, np.arange(64)).content
    half = RankingDataModule(tiny_corpus, RankingDataConfig(dense_dtype="float16"))
    half.setup()
    assert half.items.embedding.dtype == np.float16
    got = half.make_batch(half.day_frame(1), np.arange(64)).content
    for role in ref:
        assert got[role].dtype == torch.float32 and torch.allclose(got[role], ref[role], atol=2e-3)
    # a machine with room for float16 only: the refusal names data.dense_dtype=float16; with none, another way
    monkeypatch.setattr(ranking_mod, "available_memory_bytes", lambda: ranking_mod.DENSE_HEADROOM_BYTES + need * 3 // 4)
    with pytest.raises(SemidError, match=r"data.dense_dtype: Dense Input needs .* \(set data.dense_dtype=float16"):
        RankingDataModule(tiny_corpus, RankingDataConfig()).setup()
    RankingDataModule(tiny_corpus, RankingDataConfig(dense_dtype="float16")).setup()  # fits
    monkeypatch.setattr(ranking_mod, "available_memory_bytes", lambda: 1000)
    with pytest.raises(SemidError, match="use a machine with more memory, or a representation with tables"):
        RankingDataModule(tiny_corpus, RankingDataConfig(dense_dtype="float16")).setup()


def test_rank_fit_refuses_dense_in_one_line_before_training(tiny_corpus: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ranking_mod, "available_memory_bytes", lambda: 1000)
    rc = main(["rank", "fit", "--representation", "dense", "--corpus", str(tiny_corpus), "--out",
               str(tmp_path / "run"), "--set", "trainer.loggers=[csv]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("semid: error: data.dense_dtype: Dense Input needs")
    assert not (tmp_path / "run").exists()
    with pytest.raises(Exception, match="dense_dtype"):
        RankingDataConfig(dense_dtype="int8")
