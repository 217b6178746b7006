"""Items the ranker never saw: SIDs from the frozen encoder (what `sids assign --update` gives), tokens on the fly."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from semid.datamodules import RankingBatch
from semid.embeddings import build_kjt
from semid.cli import main
from semid.rqvae import read_sid_table
from semid.serve import Requests, Scorer, load_artifact
from semid.serve.requests import UnknownItemError

from .conftest import one_line_error, run

N_NEW = 6


@pytest.fixture(scope="module")
def new_items(study, tmp_path_factory):  # noqa: ANN001, ANN201
    """A copy of the corpus with N_NEW items added after training, and their SIDs by `sids assign --update`."""
    root = tmp_path_factory.mktemp("new-items")
    corpus = root / "corpus"
    shutil.copytree(study.corpus, corpus)
    items = pq.read_table(corpus / "items.parquet")
    rng = np.random.default_rng(7)
    base = rng.choice(items.num_rows, N_NEW, replace=False)
    emb = items["embedding"].combine_chunks().flatten().to_numpy().reshape(items.num_rows, -1)[base]
    emb = emb + rng.normal(0, 0.05, emb.shape)  # near existing items, as new content is
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    ids = int(items["item_id"].to_numpy().max()) + 1 + np.arange(N_NEW)
    day = study.results(study.spm_run)["eval_day"]
    added = items.take(base)
    for name, arr in (("item_id", pa.array(ids, pa.int64())),
                      ("embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])),
                      ("first_day", pa.array(np.full(N_NEW, day), items.schema.field("first_day").type))):
        added = added.set_column(added.schema.get_field_index(name), items.schema.field(name), arr)
    pq.write_table(pa.concat_tables([items, added]), corpus / "items.parquet")
    sids = root / "sids.parquet"
    shutil.copy(study.sids, sids)
    run("sids", "assign", "--model", study.rqvae, "--corpus", corpus, "--out", sids, "--update")
    return ids, emb, read_sid_table(sids), day


def _requests(ids: np.ndarray, emb: np.ndarray | None, watch: int, history: list[int], day: int) -> pa.Table:
    n = len(ids)
    cols = {"item_id": pa.array(ids, pa.int64()), "watch_item_id": pa.array([watch] * n, pa.int64()),
            "history_item_ids": pa.array([history] * n, pa.list_(pa.int64())), "day": pa.array([day] * n, pa.int32()),
            "request_id": pa.array(np.arange(n))}
    if emb is not None:
        cols["embedding"] = pa.array(list(emb), pa.list_(pa.float32()))
    return pa.table(cols)


def _reference_logits(artifact, cache, ids, watch, history, day, first_day):  # noqa: ANN001, ANN202
    """The ranker on a KJT built from ``cache`` by hand (context as make_batch computes it)."""
    n = len(ids)
    h = np.asarray(history[-artifact.schema.history_length:], np.int64)
    kjt = build_kjt(cache, {"candidate": cache.rows_of(ids), "watch": cache.rows_of(np.full(n, watch))})
    age = np.maximum(day - np.asarray(first_day), 0)
    context = np.stack([np.full(n, np.log1p(len(h)) / 4.0), np.full(n, float(watch < 0)), np.log1p(age) / 3.0],
                       1).astype(np.float32)
    batch = RankingBatch(kjt=kjt, content=None, context=torch.from_numpy(context), labels=torch.zeros(n, 2),
                         is_new=torch.zeros(n, dtype=torch.bool), popularity=torch.zeros(n, dtype=torch.int8),
                         history_items=torch.full((n,), float(len(h))), day=day)
    with torch.inference_mode():
        return artifact.model(batch).numpy()


def test_new_item_gets_the_sid_and_tokens_sids_assign_update_gives(study, new_items, tmp_path):  # noqa: ANN001
    ids, emb, table, day = new_items
    art = load_artifact(study.spm)
    known = art.items.item_id
    watch, history = int(known[3]), [int(x) for x in known[10:17]]
    pq.write_table(_requests(ids, emb, watch, history, day), tmp_path / "r.parquet")
    run("score", study.spm, "--requests", tmp_path / "r.parquet", "--out", tmp_path / "s.parquet")
    out = pq.read_table(tmp_path / "s.parquet")
    assert out["status"].to_pylist() == ["new"] * N_NEW
    assert out["request_id"].to_pylist() == list(range(N_NEW))  # extra columns pass through
    assert np.array_equal(np.array(out["sid"].to_pylist()), table.lookup(ids))  # = `sids assign --update`
    # the tokens `TokenCache.extend` gives these items with the updated SID table (`tokens build --extend`)
    ref = _reference_logits(art, art.cache.extend(ids, table), ids, watch, history, day, [day] * N_NEW)
    got = np.stack([out["ctr_logit"].to_numpy(), out["engaged_logit"].to_numpy()], 1)
    assert np.abs(got - ref).max() <= 1e-5
    # the embedding is what makes the score: the same items scored as unknown (empty bags) score otherwise
    pq.write_table(_requests(ids, None, watch, history, day), tmp_path / "r0.parquet")
    run("score", study.spm, "--requests", tmp_path / "r0.parquet", "--out", tmp_path / "s0.parquet", "--allow-unknown")
    unknown = pq.read_table(tmp_path / "s0.parquet")
    assert unknown["status"].to_pylist() == ["unknown"] * N_NEW and unknown["sid"].null_count == N_NEW
    assert not np.allclose(unknown["ctr_logit"].to_numpy(), out["ctr_logit"].to_numpy())


def test_unknown_item_without_embedding_is_refused_in_one_line(study, new_items, tmp_path, capsys):  # noqa: ANN001
    ids, _, _, day = new_items
    pq.write_table(_requests(ids[:2], None, -1, [], day), tmp_path / "r.parquet")
    capsys.readouterr()
    rc = main(["score", str(study.spm), "--requests", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "s.parquet")])
    one_line_error(capsys, rc, f"field 'item_id': 2 item id(s) the model does not know and cannot represent, e.g. "
                               f"{ids[0]}")
    assert not (tmp_path / "s.parquet").exists()
    bad = _requests(ids[:1], np.ones((1, 5), np.float32), -1, [], day)
    pq.write_table(bad, tmp_path / "bad.parquet")
    rc = main(["score", str(study.spm), "--requests", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "s.parquet")])
    dim = load_artifact(study.spm).schema.content_dim
    one_line_error(capsys, rc, f"field 'embedding': row 0 has dimension 5, the model's encoder expects {dim}")


def _arrays(ids: np.ndarray, watch: np.ndarray, emb: np.ndarray | None, day: int) -> Requests:
    n = len(ids)
    return Requests(ids.astype(np.int64), watch.astype(np.int64), np.zeros(n + 1, np.int64), np.zeros(0, np.int64),
                    np.full(n, day, np.int64), np.full(n, -1, np.int64), emb,
                    np.full(n, emb is not None, bool))


def test_a_new_item_is_remembered_for_later_requests(study, new_items):  # noqa: ANN001
    ids, emb, table, day = new_items
    art = load_artifact(study.spm)
    cand = art.items.item_id[:2]
    later = _arrays(cand, np.array([ids[0], ids[1]]), None, day)  # the new items as watch items, no embedding
    with pytest.raises(UnknownItemError, match="field 'watch_item_id'"):
        Scorer(art).score(later)
    scorer = Scorer(art)
    first = scorer.score(_arrays(ids[:2], np.array([-1, -1]), emb[:2], day))
    assert first.status.tolist() == [1, 1] and scorer.learned_items == 2
    assert np.array_equal(first.sid, table.lookup(ids[:2]))
    s = scorer.score(later)
    assert s.status.tolist() == [0, 0] and np.isfinite(s.logits).all()
    # batches with and without new items agree on the known items' scores
    alone = scorer.score(_arrays(cand, np.array([-1, -1]), None, day))
    mixed = scorer.score(_arrays(np.concatenate([cand, ids[2:4]]), np.full(4, -1), np.concatenate(
        [np.zeros((2, emb.shape[1]), np.float32), emb[2:4]]), day))
    assert np.abs(mixed.logits[:2] - alone.logits).max() <= 1e-5


def test_hashing_represents_any_new_id_without_an_embedding(study):  # noqa: ANN001
    art = load_artifact(study.hash)
    ids = art.items.item_id.max() + 100 + np.arange(4)
    day = art.schema.default_day
    ref = art.cache.extend(ids)  # hashing needs no SIDs: these are the tokens `tokens build --extend` gives
    for watch in (-1, int(art.items.item_id[0])):
        s = Scorer(art).score(_arrays(ids, np.full(4, watch), None, day))
        assert s.status.tolist() == [1] * 4 and s.sid is None
        assert np.abs(s.logits - _reference_logits(art, ref, ids, watch, [], day, [day] * 4)).max() <= 1e-5


def _one(ids: np.ndarray, emb: np.ndarray | None, day: int, watch: int = -1) -> Requests:
    return _arrays(ids, np.full(len(ids), watch), emb, day)


def test_the_new_item_cache_is_an_lru_bounded_by_entries(study, new_items):  # noqa: ANN001
    ids, emb, table, day = new_items
    art = load_artifact(study.spm)
    scorer = Scorer(art, new_item_capacity=2)
    cand = art.items.item_id[:1]
    for i in range(3):  # three new items, one batch each: the first is evicted
        scorer.score(_one(ids[i:i + 1], emb[i:i + 1], day))
    stats, size, cap = scorer.cache_stats()
    assert (size, cap, stats.misses, stats.evictions) == (2, 2, 3, 1)
    with pytest.raises(UnknownItemError, match=f"field 'watch_item_id'.* e.g. {ids[0]} "):
        scorer.score(_one(cand, None, day, watch=int(ids[0])))
    assert scorer.score(_one(cand, None, day, watch=int(ids[1]))).status.tolist() == [0]  # a use: now most recent
    scorer.score(_one(ids[3:4], emb[3:4], day))  # evicts ids[2], the least recently used, not ids[1]
    with pytest.raises(UnknownItemError, match=f"e.g. {ids[2]} "):
        scorer.score(_one(cand, None, day, watch=int(ids[2])))
    scorer.score(_one(cand, None, day, watch=int(ids[1])))
    assert scorer.cache_stats()[0].hits == 2
    # a batch naming more new items than the bound is scored whole, then trimmed
    s = scorer.score(_one(ids[:5], emb[:5], day))
    assert s.status.tolist() == [1] * 5 and np.array_equal(s.sid, table.lookup(ids[:5]))
    assert scorer.learned_items == 2


def test_a_new_embedding_for_a_cached_id_is_encoded_again(study, new_items):  # noqa: ANN001
    ids, emb, table, day = new_items
    art = load_artifact(study.spm)
    scorer = Scorer(art)
    x = ids[:1]
    first = scorer.score(_one(x, emb[:1], day))
    j = next(j for j in range(1, N_NEW) if not np.array_equal(table.lookup(ids[j:j + 1]), table.lookup(x)))
    second = scorer.score(_one(x, emb[j:j + 1], day))  # the same id, another item's embedding
    assert np.array_equal(first.sid, table.lookup(x)) and np.array_equal(second.sid, table.lookup(ids[j:j + 1]))
    stats = scorer.cache_stats()[0]
    assert (stats.misses, stats.replaced, scorer.learned_items) == (2, 1, 1)
    # scored exactly as a scorer that only ever saw the new embedding scores it, as candidate and as watch item
    fresh = Scorer(art)
    assert np.array_equal(second.logits, fresh.score(_one(x, emb[j:j + 1], day)).logits)
    assert not np.array_equal(first.logits, second.logits)
    cand = art.items.item_id[:3]
    assert np.array_equal(scorer.score(_one(cand, None, day, watch=int(x[0]))).logits,
                          fresh.score(_one(cand, None, day, watch=int(x[0]))).logits)
    scorer.score(_one(x, emb[j:j + 1], day))  # the same embedding again: a hit, nothing encoded
    assert scorer.cache_stats()[0].misses == 2
