"""Streaming readers (issue 19): items read a record batch at a time give exactly what a whole-file read gives,
in bounded memory; a bad value in a later batch is reported as a whole-file read reports it."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import semid.datamodules.corpus as corpus_mod
from semid.datamodules.corpus import Corpus, CorpusWriter
from semid.core.errors import DataError


def _corpus(path: Path, n: int = 5000, dim: int = 16, parts: int = 5, seed: int = 0) -> tuple[Corpus, np.ndarray,
                                                                                              np.ndarray]:
    """A corpus whose items.parquet is NOT in id order, written in ``parts`` row groups."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n).astype(np.int64) * 3 + 7
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    with CorpusWriter(path, dim) as w:
        for chunk in np.array_split(np.arange(n), parts):
            w.write_items(ids[chunk], emb[chunk], np.zeros(len(chunk), np.int32))
        w.write_impressions(0, {"day": np.zeros(3), "user_id": np.arange(3), "watch_item_id": -np.ones(3, int),
                                "item_id": ids[:3], "click": np.zeros(3), "engaged": np.zeros(3)})
        w.close({})
    order = np.argsort(ids)
    return Corpus(path), ids[order], emb[order]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_mod, "ITEM_BATCH_ROWS", 300)  # many batches per row group


def test_read_items_streams_to_the_same_sorted_items(tmp_path: Path, small_batches: None) -> None:
    c, ids, emb = _corpus(tmp_path / "c")
    items = c.read_items()
    assert np.array_equal(items.item_id, ids) and np.array_equal(items.embedding, emb)
    assert not c.item_order.sorted_file and np.array_equal(c.read_item_ids(), ids)
    lean = c.read_items(columns=["item_id", "embedding", "first_day"], embeddings=False)
    assert lean.embedding is None and lean.dim == 16 and np.array_equal(lean.item_id, ids)
    half = c.read_items(columns=["item_id", "embedding", "first_day"], embedding_dtype=np.float16)
    assert half.embedding.dtype == np.float16 and np.array_equal(half.embedding, emb.astype(np.float16))


def test_read_embeddings_gathers_any_rows_in_their_order(tmp_path: Path, small_batches: None) -> None:
    c, _, emb = _corpus(tmp_path / "c")
    rows = np.random.default_rng(1).integers(0, len(emb), 700)  # repeats, any order
    assert np.array_equal(c.read_embeddings(rows), emb[rows])
    file_order = c.item_order.file_row
    assert np.array_equal(c.read_embeddings(file_order[rows], file_rows=True), emb[rows])
    assert np.array_equal(c.item_order.rows_of_file_rows(file_order[rows]), rows)
    assert c.read_embeddings(np.zeros(0, np.int64)).shape == (0, 16)
    starts = [s for s, _ in c.iter_embeddings()]
    assert starts[0] == 0 and len(starts) > 5 and np.all(np.diff(starts) > 0)


def test_memory_is_one_batch_not_the_matrix(tmp_path: Path, small_batches: None) -> None:
    c, _, emb = _corpus(tmp_path / "c", n=20000, dim=64, parts=4)
    matrix = emb.nbytes  # 5 MB
    c.item_order  # noqa: B018  (the id index: O(items) integers, read once)
    tracemalloc.start()
    c.read_embeddings(np.arange(0, 20000, 97))
    gather_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    c.read_items(columns=["item_id", "embedding", "first_day"])
    full_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert gather_peak < matrix / 10  # 206 rows and a batch of 300, not 20,000 rows
    assert full_peak < 1.6 * matrix  # the matrix plus a batch (a whole-column read held ~3 copies)


def _bad_items(path: Path, n: int, bad: dict[int, float | None]) -> Path:
    emb = [[float(i), 1.0] for i in range(n)]
    for row, v in bad.items():
        emb[row] = None if v is None else [v, 1.0]  # type: ignore[call-overload]
    path.mkdir()
    pq.write_table(pa.table({"item_id": pa.array(np.arange(n), pa.int64()),
                             "embedding": pa.array(emb, pa.list_(pa.float32(), 2)),
                             "first_day": pa.array(np.zeros(n, np.int32))}), path / "items.parquet", row_group_size=100)
    (path / "impressions").mkdir()
    return path


def test_a_bad_value_in_a_later_batch_is_reported_for_the_whole_file(tmp_path: Path, small_batches: None) -> None:
    c = Corpus(_bad_items(tmp_path / "nan", 1000, {450: float("nan"), 460: float("inf"), 990: float("nan")}))
    with pytest.raises(DataError, match=r"field 'embedding': 3 item\(s\) contain NaN or inf \(first at row 450\)"):
        c.read_items()
    c = Corpus(_bad_items(tmp_path / "null", 1000, {10: None, 777: None}))
    with pytest.raises(DataError, match=r"field 'embedding': 2 item\(s\) have no embedding"):
        c.read_items()


def test_index_of_by_position_table_equals_the_binary_search():
    """Items.index_of reads a dense id -> row table when ids allow it (synthetic 7i + 1000, MovieLens 1..N) and
    searches otherwise; both give the same rows, -1 for unknown, negative and out-of-range ids."""
    import numpy as np

    from semid.datamodules.corpus import Items
    from semid.core.ids import locate

    rng = np.random.default_rng(0)
    for ids, dense in ((np.arange(500) * 7 + 1000, True), (np.sort(rng.choice(10 ** 9, 500, replace=False)), False)):
        items = Items(item_id=ids.astype(np.int64), embedding=None, first_day=np.zeros(len(ids), np.int32),
                      embedding_dim=4)
        q = np.concatenate([rng.choice(ids, 1000), rng.integers(-5, int(ids[-1]) + 50, 1000), [-1, 10 ** 12]])
        pos, found = locate(items.item_id, q)
        assert (items._position_table is not None) == dense
        np.testing.assert_array_equal(items.index_of(q), np.where(found, pos, -1))
        assert items.index_of(q).dtype == np.int64
