"""``semid rank fit`` / ``semid rank eval``."""
from __future__ import annotations

import argparse
from pathlib import Path

from semid.rankers.plan_spec import PlanSpec


def register(sub: argparse._SubParsersAction) -> None:
    rank = sub.add_parser("rank", help="train and evaluate rankers day by day")
    rsub = rank.add_subparsers(dest="rank_command", required=True, metavar="ACTION")

    p = rsub.add_parser("fit", help="train on days 1..N in order, evaluate on day N+1 (writes results.json)")
    p.add_argument("--config", default="base", help="ranker settings: a conf/ranker preset (base, dense_1.5x, "
                   "dense_2x) or a YAML path (default: base)")
    p.add_argument("--representation", help="item representation: a conf/embeddings preset (hash_8k, bigram, "
                   "spm_8k, dense, ...) or a YAML path; default: the one the --config names")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--sids", type=Path, help="sids.parquet (needed by SID representations)")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<representation name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set ranker.use_history=true")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--restart-if-changed", action="store_true",
                   help="if --out holds a checkpoint of another configuration, discard it instead of failing")
    p.add_argument("--max-train-days", type=int, metavar="N",
                   help="stop after N training days (a rerun resumes from there), e.g. to split a long run into jobs")
    p.set_defaults(func=_fit)

    p = rsub.add_parser("eval", help="evaluate a trained run on a day")
    p.add_argument("run", type=Path, help="the run directory of `semid rank fit`")
    p.add_argument("--day", type=int, help="day to evaluate (default: the run's evaluation day)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint (default: <run>/checkpoints/last.ckpt)")
    p.add_argument("--json", type=Path, help="write the metrics to this file")
    p.set_defaults(func=_eval)

    register_plan(sub)


def register_plan(sub: argparse._SubParsersAction) -> None:
    d = PlanSpec()
    p = sub.add_parser("plan", help="TorchRec planner dry run for a paper-scale configuration (CPU only)")
    p.add_argument("--representation", default=d.representation, help="hash | unigram | bigram | spm | all")
    p.add_argument("--levels", type=int, default=d.levels, help="L (default 8)")
    p.add_argument("--codebook-size", type=int, default=d.codebook_size, help="K (default 2048)")
    p.add_argument("--hash-rows", type=int, default=d.hash_rows)
    p.add_argument("--spm-rows", type=int, help="default: the bigram budget (L/2)*K^2")
    p.add_argument("--dim", type=int, default=d.dim)
    p.add_argument("--nodes", type=int, default=d.nodes)
    p.add_argument("--gpus-per-node", type=int, default=d.gpus_per_node)
    p.add_argument("--hbm-gb", type=float, default=d.hbm_gb)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per-rank batch size")
    p.add_argument("--sharding-types", help="comma list to constrain every table, e.g. row_wise,table_row_wise")
    p.add_argument("--json", type=Path)
    p.set_defaults(func=_plan)


def _plan(args: argparse.Namespace) -> int:
    from semid.rankers.plan import dry_run, render  # torchrec: only for the command that plans
    from semid.core.artifacts import write_json

    spec = PlanSpec(representation=args.representation, levels=args.levels, codebook_size=args.codebook_size,
                    hash_rows=args.hash_rows, spm_rows=args.spm_rows, dim=args.dim, nodes=args.nodes,
                    gpus_per_node=args.gpus_per_node, hbm_gb=args.hbm_gb, batch_size=args.batch_size,
                    sharding_types=args.sharding_types.split(",") if args.sharding_types else None)
    result = dry_run(spec)
    render(result)
    if args.json:
        write_json(args.json, result)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from semid.rankers.config import load_rank_config
    from semid.rankers.fit import fit, summary_line
    from semid.core.quiet import quiet_libraries

    cfg = load_rank_config(args.config, args.overrides, representation=args.representation)
    out = args.out or Path("runs") / cfg.representation.name
    with quiet_libraries():
        results = fit(cfg, args.corpus, out, sids_path=args.sids, resume=not args.no_resume,
                      max_train_days=args.max_train_days, restart_if_changed=args.restart_if_changed)
    if results.get("global_rank", 0) != 0:
        return 0  # one summary per run, from rank 0
    if results.get("metrics") is None:
        print(f"stopped after {len(results['train_days'])} training day(s); rerun without --max-train-days to resume")
        return 0
    print(summary_line(results))
    print(f"results: {out / 'results.json'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from semid.rankers.fit import evaluate, summary_line
    from semid.core.artifacts import write_json
    from semid.core.quiet import quiet_libraries

    with quiet_libraries():
        results = evaluate(args.run, args.day, args.checkpoint)
    print(summary_line(results))
    if args.json:
        write_json(args.json, results)
    return 0
