"""Property: for any corruption drawn from a generated set, ``open_corpus`` either refuses with ``DataError`` or gives
a corpus that reads as the clean one (every impression column and item as the readers convert them); a lossless
change (another integer width, digit strings, dictionary encoding, bool labels, ``day=1`` for ``day=0001``) is
accepted."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from semid.datamodules import Corpus, open_corpus, to_int64
from semid.core.errors import DataError
from tests.datamodules.gate_corpus import DAYS, IDS, ROWS, day_file, set_column, set_value, write_corpus

COLUMNS = ("day", "user_id", "watch_item_id", "item_id", "click", "engaged")
LABELS = ("click", "engaged")
TYPES = ("int32", "uint16", "int64", "float64", "float32", "string", "large_string", "dictionary", "bool")
LOSSLESS_PARTITIONS = ("day={d}", "day={d:06d}")
OTHER_PARTITIONS = ("day=abc", "tmp", "day={d:04d}.bak", "day={d}x", "day=", "DAY={d:04d}", "copy to day={d}")

days = st.integers(0, DAYS - 1)
rows = st.integers(0, ROWS - 1)
corruptions = st.one_of(
    st.tuples(st.just("label"), st.sampled_from(LABELS), days, rows, st.sampled_from([-1, 2, 3, 7, 100, -128])),
    st.tuples(st.just("null"), st.sampled_from(("day", "user_id", "item_id") + LABELS), days, rows),
    st.tuples(st.just("unknown id"), st.sampled_from(("item_id", "watch_item_id")), days, rows,
              st.sampled_from([int(IDS[0]) - 1, int(IDS[-1]) + 1, 10 ** 9])),
    st.tuples(st.just("type"), st.sampled_from(COLUMNS), days, st.sampled_from(TYPES)),
    st.tuples(st.just("bad value"), st.sampled_from(COLUMNS), days, rows, st.sampled_from(("half", "nan", "text",
                                                                                             "padded", "negative"))),
    st.tuples(st.just("partition"), days, st.sampled_from(LOSSLESS_PARTITIONS + OTHER_PARTITIONS)),
    st.tuples(st.just("item ids"), st.sampled_from(TYPES + ("zero-padded", "duplicate", "negative"))),
    st.tuples(st.just("item rows"), st.sampled_from(("first_day after an impression", "nan embedding",
                                                     "identical embeddings", "float64 embeddings")),
              st.integers(0, len(IDS) - 1)),
)


def _retype(arr: pa.ChunkedArray, to: str) -> pa.Array:
    arr = arr.combine_chunks()
    if to == "dictionary":
        return pc.cast(arr, pa.string()).dictionary_encode()
    return pc.cast(arr, {"int32": pa.int32(), "uint16": pa.uint16(), "int64": pa.int64(), "float64": pa.float64(),
                         "float32": pa.float32(), "string": pa.string(), "large_string": pa.large_string(),
                         "bool": pa.bool_()}[to], safe=False)


def corrupt(c: Path, how: tuple) -> bool:
    """Applies ``how`` to the corpus ``c``; True when the change is lossless (the corpus must then be accepted)."""
    kind = how[0]
    if kind == "label":
        _, name, day, row, value = how
        set_value(day_file(c, day), name, row, value)
    elif kind == "null":
        _, name, day, row = how
        set_value(day_file(c, day), name, row, None)
    elif kind == "unknown id":
        _, name, day, row, value = how
        set_value(day_file(c, day), name, row, value)
    elif kind == "type":
        _, name, day, to = how
        f = day_file(c, day)
        set_column(f, name, _retype(pq.read_table(f)[name], to))
        return not (to == "bool" and name not in LABELS)  # a bool is a label, not an id or a day
    elif kind == "bad value":
        _, name, day, row, bad = how
        f = day_file(c, day)
        vals = pq.read_table(f)[name].to_pylist()
        if bad in ("half", "nan"):
            floats = [None if v is None else float(v) for v in vals]
            floats[row] = (float(vals[row] or 0) + 0.5) if bad == "half" else float("nan")
            set_column(f, name, pa.array(floats, pa.float64()))
        elif bad == "negative":
            vals[row] = -5
            set_column(f, name, pa.array(vals, pa.int64()))
        else:  # 'text', or a digit string padded with a space (Python's int() takes it; the contract does not)
            strs = [None if v is None else str(v) for v in vals]
            strs[row] = "x" if bad == "text" else f" {vals[row] if vals[row] is not None else 1}"
            set_column(f, name, pa.array(strs, pa.string()))
    elif kind == "partition":
        _, day, name = how
        src = c / "impressions" / f"day={day:04d}"
        if name.startswith("copy to "):
            shutil.copytree(src, c / "impressions" / name[len("copy to "):].format(d=day))
        else:
            src.rename(c / "impressions" / name.format(d=day))
            return name in LOSSLESS_PARTITIONS
    elif kind == "item ids":
        _, to = how
        t = pq.read_table(c / "items.parquet")
        if to == "zero-padded":
            arr: pa.Array = pa.array([f"{int(i):05d}" for i in t["item_id"].to_pylist()])
        elif to in ("duplicate", "negative"):
            ids = t["item_id"].to_pylist()
            ids[3] = ids[4] if to == "duplicate" else -ids[3]
            arr = pa.array(ids, pa.int64())
        else:
            arr = _retype(t["item_id"], to)
        set_column(c / "items.parquet", "item_id", arr)
        return to not in ("bool", "duplicate", "negative")
    elif kind == "item rows":
        _, what, i = how
        t = pq.read_table(c / "items.parquet")
        emb = np.array(t["embedding"].to_pylist(), np.float32)
        if what == "first_day after an impression":
            item = int(pq.read_table(day_file(c, 1))["item_id"][i % ROWS].as_py())  # impressed on day 1
            first = t["first_day"].to_numpy().copy()
            first[list(IDS).index(item)] = 2
            set_column(c / "items.parquet", "first_day", pa.array(first, pa.int32()))
        elif what == "nan embedding":
            emb[i, 1] = np.nan
            set_column(c / "items.parquet", "embedding", pa.array(emb.tolist(), pa.list_(pa.float32(), emb.shape[1])))
        elif what == "identical embeddings":
            set_column(c / "items.parquet", "embedding", pa.array([emb[i].tolist()] * len(emb),
                                                                  pa.list_(pa.float32(), emb.shape[1])))
        else:
            set_column(c / "items.parquet", "embedding", pa.array(emb.astype(np.float64).tolist(),
                                                                  pa.list_(pa.float64())))
            return True
    return False


def _reads(corpus: Corpus) -> dict[str, np.ndarray]:
    """Everything a command reads, as the readers convert it."""
    out: dict[str, np.ndarray] = {"days": np.array(corpus.days())}
    for day in corpus.days():
        t = corpus.read_day(day)
        for name in COLUMNS:
            out[f"{day}/{name}"] = to_int64(t[name], corpus.path, name, nullable=name == "watch_item_id")
    items = corpus.read_items()
    out.update(item_id=items.item_id, embedding=items.embedding, first_day=items.first_day)
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    c = write_corpus(tmp_path_factory.mktemp("gate") / "clean")
    return c, _reads(Corpus(c))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=corruptions)
@example(how=("label", "click", 1, 3, 2))
@example(how=("type", "click", 0, "bool"))
@example(how=("partition", 2, "day={d}"))
@example(how=("item ids", "zero-padded"))
@example(how=("bad value", "item_id", 1, 0, "padded"))
def test_any_corruption_is_refused_or_reads_as_the_clean_corpus(clean, how):
    src, want = clean
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMID_CACHE_DIR", str(Path(tmp) / "cache"))
        c = Path(tmp) / "c"
        shutil.copytree(src, c)
        lossless = corrupt(c, how)
        try:
            got = open_corpus(c)
        except DataError:
            assert not lossless, f"a lossless change was refused: {how}"
            return
        reads = _reads(got)
        assert reads.keys() == want.keys(), how
        for k in want:
            np.testing.assert_array_equal(reads[k], want[k], err_msg=f"{how}: {k}")
