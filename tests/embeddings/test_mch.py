"""Managed collisions (``kind: mch``): config and its one-line errors, tokens (raw MCH ids) and the table, and
TorchRec's managed-collision modules as semid builds them: a new id gets a fresh row of its own, an unseen id
at evaluation the shared miss row, and a full table evicts by LFU or LRU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchrec import EmbeddingBagConfig, KeyedJaggedTensor

from semid.embeddings import build_token_cache, load_representation_config, managed_collision_collection
from semid.embeddings.mch import INPUT_HASH_SIZE, MchConfig, mch_ids
from semid.embeddings.tokenizer import TableSpec
from semid.cli import main
from semid.core.errors import SemidError

ROLES = ("candidate", "watch")


def _mcc(rows: int, eviction: str):
    cfg = MchConfig(name="m", rows=rows, eviction=eviction)
    tables = [EmbeddingBagConfig(name="m", embedding_dim=4, num_embeddings=rows,
                                 feature_names=[f"{r}__m" for r in ROLES])]
    return managed_collision_collection(cfg, tables, device="cpu")


def _rows(mcc, candidates: list[int], watched: list[int] | None = None) -> list[int]:
    """Rows the collection gives ``candidates`` (raw ids; one per sample), ``watched`` the watch feature."""
    watched = watched if watched is not None else []
    lengths = [1] * len(candidates) + [1] * len(watched) + [0] * (len(candidates) - len(watched))
    kjt = KeyedJaggedTensor(keys=[f"{r}__m" for r in ROLES], values=torch.tensor(candidates + watched),
                            lengths=torch.tensor(lengths, dtype=torch.int32))
    return mcc(kjt)["candidate__m"].values().tolist()


def _held(mcc) -> set[int]:
    raw = mcc._managed_collision_modules["m"]._mch_sorted_raw_ids
    return set(raw[raw != torch.iinfo(torch.int64).max].tolist())


def test_presets_are_sized_like_the_hash_tables_and_name_their_eviction() -> None:
    for mch, hashed in (("mch_8k", "hash_8k"), ("mch_large", "hash_large")):
        cfg = load_representation_config(mch)
        assert isinstance(cfg, MchConfig) and cfg.name == mch and cfg.eviction in ("lfu", "lru")
        assert cfg.rows == load_representation_config(hashed).rows


@pytest.mark.parametrize("body, expected", [
    ("kind: mch\nrows: 1\n", "field 'rows': must be an integer >= 2 (got 1)"),
    ("kind: mch\nrows: 8k\n", "field 'rows'"),
    ("kind: mch\neviction: fifo\n", "field 'eviction': must be one of lfu, lru (got 'fifo'"),
    ("kind: mch\nevict: lru\n", "unknown key(s) evict (valid: eviction, kind, name, rows, seed)"),
    ("kind: mch\nseed: -1\n", "field 'seed': must be an integer >= 0"),
])
def test_bad_configs_are_one_line_errors_naming_file_and_field(tmp_path: Path, capsys, body: str,
                                                               expected: str) -> None:
    bad = tmp_path / "bad_mch.yaml"
    bad.write_text(body)
    with pytest.raises(SemidError, match="bad_mch.yaml: "):
        load_representation_config(bad)
    # the CLI: one line, exit 2, before any work (no corpus is opened: it does not exist)
    rc = main(["rank", "fit", "--representation", str(bad), "--corpus", str(tmp_path / "nowhere"),
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"semid: error: {bad}: ") and expected in err[0], err
    assert not (tmp_path / "run").exists()


def test_an_mch_part_in_a_hybrid_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "hy.yaml"
    bad.write_text("kind: hybrid\nparts:\n  - {kind: spm, name: s, vocab_size: 64}\n  - {kind: mch, name: m}\n")
    with pytest.raises(SemidError, match="hy.yaml: field 'parts' may not contain an mch representation"):
        load_representation_config(bad)


def test_tokens_are_one_seeded_raw_id_per_item_in_mch_input_space() -> None:
    ids = np.arange(50_000, dtype=np.int64) * 7919 + 3
    cache = build_token_cache(MchConfig(name="m", rows=64), None, ids, None)
    assert cache.tables == [TableSpec("m", 64)] and cache.kind == "mch" and not cache.tokenizer.needs_sids
    v = cache.jagged[0].values
    assert cache.lookups_per_item().tolist() == [1] * len(ids)
    assert v.min() >= 0 and v.max() < INPUT_HASH_SIZE and v.max() > INPUT_HASH_SIZE // 2  # the whole space
    assert len(np.unique(v)) == len(ids)  # no two items share a raw id: collisions are MCH's to manage
    assert (v == mch_ids(cache.item_id, 0)).all()
    other = build_token_cache(MchConfig(name="m", rows=64, seed=1), None, ids, None).jagged[0].values
    assert (other != v).mean() > 0.99
    # row-wise sharding cuts the input space into one block per rank: hashed ids fill both halves evenly
    assert abs((v < INPUT_HASH_SIZE // 2).mean() - 0.5) < 0.01
    # an item added later gets its token from the same hash (the ranker gives it a row when it is seen)
    grown = cache.extend(np.array([10**12], np.int64))
    assert grown.jagged[0].values[grown.rows_of(np.array([10**12]))[0]] == mch_ids(np.array([10**12]), 0)[0]


@pytest.mark.parametrize("eviction", ["lfu", "lru"])
def test_new_ids_get_fresh_rows_and_unseen_ids_share_the_miss_row(eviction: str) -> None:
    mcc = _mcc(8, eviction).train()
    first = _rows(mcc, [101, 102, 103], watched=[101])
    assert len(set(first)) == 3 and max(first) < 7  # three ids, three rows of their own; row 7 is the miss row
    again = _rows(mcc, [103, 104, 101])
    assert again[0] == first[2] and again[2] == first[0]  # a known id keeps its row
    assert again[1] not in first and again[1] < 7  # a new id gets a fresh row, never another id's
    assert _held(mcc) == {101, 102, 103, 104}
    mcc.eval()  # evaluation inserts nothing: an id never seen in training scores through the shared miss row
    assert _rows(mcc, [999, 101, 998]) == [7, first[0], 7]
    assert _held(mcc) == {101, 102, 103, 104}


def test_lfu_evicts_the_least_often_seen_id_when_full() -> None:
    mcc = _mcc(4, "lfu").train()  # 3 managed rows + the miss row
    ids = [1, 1, 1, 2, 2, 3]
    rows = dict(zip(ids, _rows(mcc, ids)))  # counts 3, 2, 1: full
    assert _held(mcc) == {1, 2, 3}
    assert _rows(mcc, [9]) == [3]  # a new id seen once does not beat id 3 (seen once before): the miss row
    assert _held(mcc) == {1, 2, 3}
    got = _rows(mcc, [8, 8, 8, 8])  # seen 4 times in a step: it evicts the least often seen id (3)
    assert _held(mcc) == {1, 2, 8} and got == [rows[3]] * 4  # and takes its row
    counts = mcc._managed_collision_modules["m"]._mch_counts
    assert sorted(counts[:3].tolist()) == [2, 3, 4]  # 3 is gone with its count; 8 holds its own 4


def test_lru_evicts_the_least_recently_seen_id_when_full() -> None:
    mcc = _mcc(4, "lru").train()
    r1, = _rows(mcc, [1])
    r2, r3 = _rows(mcc, [2, 3])
    _rows(mcc, [1, 2])  # 3 is now the least recently seen
    assert _held(mcc) == {1, 2, 3}
    got, = _rows(mcc, [7])  # a new id always gets a row under LRU: it takes the stalest one's
    assert _held(mcc) == {1, 2, 7} and got == r3
    _rows(mcc, [2])
    got, = _rows(mcc, [5])
    assert _held(mcc) == {2, 5, 7} and got == r1  # then 1 (last seen three steps ago; 7 and 2 since)
    assert r1 != r2
