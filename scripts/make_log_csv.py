"""Write a synthetic interaction log (CSV: user,item,time,rating) and its embeddings for `semid data import`'s
bounded-memory benchmark (BENCHMARKS.md, "Importing a log"). Written a block at a time: the generator itself
holds one block.

    python scripts/make_log_csv.py /tmp/biglog --rows 10000000 --items 100000 --days 60
    /usr/bin/time -v semid data import /tmp/biglog/log.csv --embeddings /tmp/biglog/emb.parquet \\
        --user user --item item --time time --label 'rating>=4' --out /tmp/biglog/corpus
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

T0 = 1_573_257_600  # 2019-11-09 00:00 UTC
BLOCK = 1_000_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--dim", type=int, default=32)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(a.items, a.dim)).astype(np.float32)
    pq.write_table(pa.table({"item_id": pa.array(np.arange(a.items), pa.int64()),
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), a.dim)}),
                   a.out / "emb.parquet")
    span = a.days * 86400
    with pacsv.CSVWriter(a.out / "log.csv", pa.schema([("user", pa.int64()), ("item", pa.int64()),
                                                        ("time", pa.int64()), ("rating", pa.int8())])) as w:
        for start in range(0, a.rows, BLOCK):
            n = min(BLOCK, a.rows - start)
            # time-ordered, as logs are: block k covers its share of the span
            t = T0 + (start + np.sort(rng.integers(0, BLOCK, n))) * span // a.rows
            item = np.minimum(rng.zipf(1.3, n) - 1, a.items - 1)  # a popularity skew
            w.write_table(pa.table({"user": rng.integers(0, a.users, n), "item": item, "time": t,
                                    "rating": rng.integers(1, 6, n).astype(np.int8)}))
    print(a.out / "log.csv")


if __name__ == "__main__":
    main()
