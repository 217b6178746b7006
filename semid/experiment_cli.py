"""``semid experiment``: the paper's study end to end (the README's main job)."""
from __future__ import annotations

import argparse
from pathlib import Path

from semid.core.errors import SemidError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run the paper's study end to end and write report.md")
    p.add_argument("--preset", default="small", help="conf/experiment preset or YAML file (default: small)")
    p.add_argument("--out", type=Path, help="experiment directory (default: runs/experiment-<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set ranker_overrides=[data.batch_size=1024]")
    p.add_argument("--seeds", help="comma list of training seeds, e.g. 0,1,2 (replaces the preset's seeds)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from semid.experiment import Experiment, load_experiment_config

    overrides = list(args.overrides)
    if args.seeds:
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            raise SemidError(f"--seeds {args.seeds}: expected a comma list of integers, e.g. 0,1,2") from None
        overrides.append(f"seeds={seeds}")
    cfg = load_experiment_config(args.preset, overrides)
    out = args.out or Path("runs") / f"experiment-{cfg.name}"
    arms = len(cfg.representations) + len(cfg.ranker_variants)
    print(f"experiment {cfg.name}: {arms} representations and ranker variants x {len(cfg.settings)} settings x "
          f"{len(cfg.seeds)} seed(s) -> {out}")
    report = Experiment(cfg, out, log=lambda m: print(f"  {m}", flush=True)).run()
    print(f"report: {report}")
    return 0
