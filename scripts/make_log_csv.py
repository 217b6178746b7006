"""Write a synthetic interaction log (CSV: user,item,time,rating) and its embeddings for `semid data import`'s
bounded-memory benchmark (BENCHMARKS.md, "Importing a log"; ``semid bench import`` generates the same logs and
times the import). Written a block at a time: the generator itself holds one block.

    python scripts/make_log_csv.py /tmp/biglog --rows 10000000 --items 100000 --days 60
    /usr/bin/time -v semid data import /tmp/biglog/log.csv --embeddings /tmp/biglog/emb.parquet \\
        --user user --item item --time time --label 'rating>=4' --out /tmp/biglog/corpus
"""
from __future__ import annotations

import argparse
from pathlib import Path

from semid.bench.import_bench import write_log


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--dim", type=int, default=32)
    a = p.parse_args()
    log, _ = write_log(a.out, rows=a.rows, items=a.items, users=a.users, days=a.days, dim=a.dim)
    print(log)


if __name__ == "__main__":
    main()
