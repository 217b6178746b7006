"""A tiny corpus for the gate's tests: 12 items (8 from day 0, 4 from day 1), 3 days of 20 impressions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from semid.datamodules import CorpusWriter

N_ITEMS, DIM, DAYS, ROWS = 12, 4, 3, 20
FIRST_DAY = np.array([0] * 8 + [1] * 4, np.int32)
IDS = np.arange(N_ITEMS, dtype=np.int64) + 10


def write_corpus(out: Path) -> Path:
    rng = np.random.default_rng(7)
    with CorpusWriter(out, DIM) as w:
        w.write_items(IDS, rng.normal(size=(N_ITEMS, DIM)), FIRST_DAY)
        for d in range(DAYS):
            live = IDS[FIRST_DAY <= d]  # no impression before its item's first_day
            click = rng.integers(0, 2, ROWS)
            w.write_impressions(d, {"day": np.full(ROWS, d), "user_id": rng.integers(0, 6, ROWS),
                                    "watch_item_id": np.where(rng.random(ROWS) < 0.25, -1, rng.choice(live, ROWS)),
                                    "item_id": rng.choice(live, ROWS), "click": click,
                                    "engaged": click * rng.integers(0, 2, ROWS)})
        w.close({"source": "test"})
    return out


def day_file(corpus: Path, day: int = 1) -> Path:
    return corpus / "impressions" / f"day={day:04d}" / "part-0000.parquet"


def set_column(path: Path, name: str, values: pa.Array | list) -> None:
    """Rewrites ``path`` with column ``name`` replaced (same position, the array's own type)."""
    t = pq.read_table(path)
    arr = values if isinstance(values, pa.Array) else pa.array(values)
    pq.write_table(t.set_column(t.column_names.index(name), pa.field(name, arr.type), arr), path)


def set_value(path: Path, name: str, row: int, value: object) -> None:
    """Rewrites ``path`` with one value of ``name`` replaced (``None``: null), keeping the column's type."""
    t = pq.read_table(path)
    vals = t[name].to_pylist()
    vals[row] = value
    set_column(path, name, pa.array(vals, t.schema.field(name).type))
