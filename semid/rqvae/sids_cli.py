"""``semid sids ...``: train a quantizer (RQ-VAE or residual k-means), assign SIDs, report on them, compare two
tables, benchmark peers."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    sids = sub.add_parser("sids", help="Semantic IDs: train a quantizer, assign, report, compare, bench")
    ssub = sids.add_subparsers(dest="sids_command", required=True, metavar="ACTION")

    p = ssub.add_parser("train", help="train a quantizer (RQ-VAE or residual k-means) on a corpus and freeze it "
                                      "(rqvae.pt + health.json)")
    p.add_argument("--corpus", type=Path, required=True, help="corpus directory")
    p.add_argument("--config", default="small", help="preset in conf/rqvae/ (tiny, small, paper, ml100k, "
                                                     "small_rqkmeans, ...) or a YAML file")
    # no argparse choices: the config validates the name, so a wrong one is the usual one-line error
    p.add_argument("--quantizer", metavar="rqvae|rqkmeans",
                   help="override the config's quantizer: rqvae (the paper's RQ-VAE) or rqkmeans (residual "
                        "k-means: faiss if installed, else semid's own; settings under rqkmeans.*, e.g. "
                        "--set rqkmeans.balanced=true)")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<quantizer>-<config>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.levels=3 --set train.steps=500")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--logger", choices=("csv", "wandb"), help="override run.logger (CSV is always written)")
    p.add_argument("--threads", type=int, help="override run.threads (CPU threads; 1 is often fastest on a busy machine)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run directory (and an interrupted run of another config in <out>.partial)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over instead of resuming the interrupted run in <out>.partial")
    p.set_defaults(func=_train)

    p = ssub.add_parser("assign", help="write sids.parquet for every item of a corpus with a frozen RQ-VAE")
    p.add_argument("--model", type=Path, required=True, help="run directory or its rqvae.pt")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="SID table to write, e.g. sids.parquet")
    p.add_argument("--update", action="store_true", help="add items missing from an existing table only")
    p.add_argument("--overwrite", action="store_true", help="rewrite an existing table from scratch")
    p.add_argument("--batch-size", type=int, default=1024,
                   help="items per encoding batch (default 1024; SIDs do not depend on it)")
    p.add_argument("--threads", type=int, help="CPU threads for encoding (SIDs do not depend on it)")
    p.add_argument("--chunk-items", type=int, default=None, metavar="N",
                   help="items per saved chunk: a rerun after an interruption reuses the finished chunks in "
                        "<out>.partial (default 250000; SIDs do not depend on it)")
    p.add_argument("--collision-suffix", action="store_true", default=None,
                   help="add a level numbering the items that share a SID (by distance to their reconstruction), "
                        "so every SID is unique; --update keeps the table's choice")
    p.set_defaults(func=_assign)

    p = ssub.add_parser("report", help="Table 1 (similarity by shared prefix), utilisation, collisions, sub-trie browser")
    p.add_argument("sids", type=Path, help="SID table (sids.parquet)")
    p.add_argument("--corpus", type=Path, required=True, help="corpus the items and embeddings come from")
    p.add_argument("--model", type=Path, help="refuse the table unless this RQ-VAE made it")
    p.add_argument("--prefix", help="browse the sub-trie under this SID prefix, e.g. --prefix 3,17")
    p.add_argument("--max-children", type=int, default=8, help="codes shown per node of the browser")
    p.add_argument("--max-items", type=int, default=5, help="items shown per full SID in the browser")
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    p.set_defaults(func=_report)

    p = ssub.add_parser("compare", help="agreement of two SID tables (per-level codes, prefix stability)")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--json", type=Path, help="also write the comparison as JSON")
    p.set_defaults(func=_compare)

    p = ssub.add_parser("bench", help="RQ-VAE vs residual k-means (semid, plain and balanced; faiss) and "
                                      "ResidualVQ on the same embeddings")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--config", default="small", help="RQ-VAE preset or YAML; peers use its L, K and steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, help="CPU threads for every method (override run.threads)")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    p.set_defaults(func=_bench)


def _train(args: argparse.Namespace) -> int:
    from semid.rqvae.config import load_rqvae_config
    from semid.rqvae.train import launched_rank, train_quantizer

    overrides = list(args.overrides)
    if args.quantizer is not None:
        overrides.append(f"quantizer={args.quantizer}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.logger:
        overrides.append(f"run.logger={args.logger}")
    if args.threads is not None:
        overrides.append(f"run.threads={args.threads}")
    cfg = load_rqvae_config(args.config, overrides)
    stem = Path(args.config).stem
    # runs/rqvae-small, runs/rqkmeans-small, runs/small_rqkmeans: the default names the quantizer once
    out = args.out or Path("runs") / (stem if cfg.quantizer in stem else f"{cfg.quantizer}-{stem}")
    r = train_quantizer(args.corpus, cfg, out, overwrite=args.overwrite, resume=not args.no_resume)
    if launched_rank() != 0:  # every DDP rank runs this command; one line is enough
        return 0
    h = r.health["all_items"]
    q = r.health.get("quantizer", {"kind": "rqvae"})
    verb = "up to date (pass --overwrite to retrain):" if r.up_to_date else "wrote"
    if q["kind"] == "rqkmeans":
        what = f"residual k-means ({'balanced, ' if q['balanced'] else ''}k-means: {q['kmeans']})"
        extra = ""
    else:
        what = "RQ-VAE"
        extra = f"; dead-code resets {r.health['train']['dead_code_resets_per_level']}"
    print(f"{verb} {out}/rqvae.pt, {what}, fingerprint {r.model.fingerprint}, in {r.fit_seconds:.0f}s: relative "
          f"error {h['relative_error']:.3f}, utilisation per level "
          f"{', '.join(f'{u:.0%}' for u in h['utilisation_per_level'])}, unique SIDs {h['unique_sid_fraction']:.2%}, "
          f"largest collision {h['largest_collision_group']} (all items){extra}; health in {out}/health.json")
    return 0


def _assign(args: argparse.Namespace) -> int:
    from semid.rqvae.assign import DEFAULT_CHUNK_ITEMS, assign_sids
    from semid.rqvae.config import cpu_threads

    chunk_items = DEFAULT_CHUNK_ITEMS if args.chunk_items is None else args.chunk_items
    with cpu_threads(args.threads):
        r = assign_sids(args.model, args.corpus, args.out, update=args.update, overwrite=args.overwrite,
                        batch_size=args.batch_size, chunk_items=chunk_items, collision_suffix=args.collision_suffix)
    if r.chunks == 0 and not args.update:
        print(f"{r.path} is up to date: {len(r.table):,} items, made by model {r.table.rqvae_fingerprint} from this "
              "corpus (pass --overwrite to rewrite it)")
        return 0
    reused = f"; reused {r.reused_chunks} of {r.chunks} chunks of an interrupted run" if r.reused_chunks else ""
    suffix = (f" (the last numbers items sharing a SID: up to {r.largest_collision_group} per SID)"
              if r.table.collision_suffix else "")
    print(f"wrote {r.path}: {len(r.table):,} items ({r.added:,} assigned now), L={r.table.levels}{suffix}, "
          f"K={r.table.codebook_size}, model {r.table.rqvae_fingerprint}{reused}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from semid.datamodules import open_corpus
    from semid.core.artifacts import write_json
    from semid.rqvae.frozen import load_frozen
    from semid.rqvae.report import parse_prefix, render_report, sid_report
    from semid.rqvae.sid_table import read_sid_table

    expect = load_frozen(args.model).fingerprint if args.model else None
    table = read_sid_table(args.sids, expect_rqvae=expect)
    items = open_corpus(args.corpus).read_items()
    prefix = parse_prefix(args.prefix) if args.prefix else None
    report = sid_report(table, items, prefix, args.max_children, args.max_items)
    render_report(report)
    if args.json:
        write_json(args.json, report)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from semid.core.artifacts import write_json
    from semid.rqvae.compare import compare_tables, render_compare
    from semid.rqvae.sid_table import read_sid_table

    result = compare_tables(read_sid_table(args.a), read_sid_table(args.b))
    render_compare(result)
    if args.json:
        write_json(args.json, result)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from semid.core.artifacts import write_json
    from semid.rqvae.bench import bench_peers, markdown_table, render_bench
    from semid.rqvae.config import load_rqvae_config

    overrides = list(args.overrides) + ([f"run.threads={args.threads}"] if args.threads is not None else [])
    cfg = load_rqvae_config(args.config, overrides)
    result = bench_peers(args.corpus, cfg)
    render_bench(result)
    if args.markdown:
        print(markdown_table(result))
    if args.json:
        write_json(args.json, result)
    return 0
