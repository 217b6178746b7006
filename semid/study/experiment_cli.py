"""``semid experiment``: the paper's study end to end (the README's main job)."""
from __future__ import annotations

import argparse
from pathlib import Path

from semid.core.errors import SemidError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run the paper's study end to end and write report.md")
    p.add_argument("--preset", default="small",
                   help="conf/experiment preset or YAML file (default: small); a regime map (regimes, "
                        "regimes_tiny: a top-level grid:) runs every cell and writes regimes.md")
    p.add_argument("--out", type=Path, help="experiment directory (default: runs/experiment-<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set ranker_overrides=[data.batch_size=1024]")
    p.add_argument("--seeds", help="comma list of training seeds, e.g. 0,1,2 (replaces the preset's seeds)")
    g = p.add_argument_group("launcher", "where the fits (and, with submitit, the quantizer trainings) run; "
                                         "the config's launcher: block, these flags win")
    g.add_argument("--launcher", choices=("local", "submitit"),
                   help="local subprocesses (default) or one submitit job per fit (SLURM, or submitit's local executor)")
    g.add_argument("--cluster", choices=("auto", "slurm", "local"),
                   help="submitit's executor (default auto: slurm where sbatch is found, else local)")
    g.add_argument("--partition", help="SLURM partition of the jobs")
    g.add_argument("--gpus-per-job", type=int, metavar="N", help="GPUs per fit job, one task each (default 0)")
    g.add_argument("--time-limit", type=int, metavar="MIN",
                   help="minutes per job (default 240); a fit that reaches it is requeued and resumes")
    g.add_argument("--max-jobs", type=int, metavar="N", help="submitit jobs queued or running at once (default 64)")
    p.set_defaults(func=_run)


# flag -> launcher field; the flags are overrides after --set, so they win over it and the config file
_LAUNCHER_FLAGS = {"launcher": "kind", "cluster": "cluster", "partition": "partition", "gpus_per_job": "gpus_per_job",
                   "time_limit": "time_limit_min", "max_jobs": "max_jobs"}


def _run(args: argparse.Namespace) -> int:
    # deferred: `semid --help` and the other commands do not pay for the experiment's imports (torch, matplotlib)
    from semid.study.regimes import is_regimes_config

    if is_regimes_config(args.preset):
        return _run_regimes(args)
    from semid.study.experiment import Experiment, load_experiment_config

    overrides = list(args.overrides)
    if args.seeds:
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            raise SemidError(f"--seeds {args.seeds}: expected a comma list of integers, e.g. 0,1,2") from None
        overrides.append(f"seeds={seeds}")
    flags = {}  # override -> the flag as typed, so an error names the flag
    for flag, key in _LAUNCHER_FLAGS.items():
        if getattr(args, flag) is not None:
            flags[f"launcher.{key}={getattr(args, flag)}"] = f"--{flag.replace('_', '-')} {getattr(args, flag)}"
    try:
        cfg = load_experiment_config(args.preset, overrides + list(flags))
    except SemidError as e:
        said = next((f"{typed}{str(e)[len(f'--set {o}'):]}" for o, typed in flags.items()
                     if str(e).startswith(f"--set {o}:")), None)
        if said is None:
            raise
        raise SemidError(said) from None
    out = args.out or Path("runs") / f"experiment-{cfg.name}"
    arms = len(cfg.representations) + len(cfg.ranker_variants)
    print(f"experiment {cfg.name}: {arms} representations and ranker variants x {len(cfg.settings)} settings x "
          f"{len(cfg.seeds)} seed(s) -> {out}" + (f" (submitit: {cfg.launcher.cluster})" if cfg.launcher.kind == "submitit"
                                                  else ""))
    report = Experiment(cfg, out, log=lambda m: print(f"  {m}", flush=True)).run()
    print(f"report: {report}")
    return 0


def _run_regimes(args: argparse.Namespace) -> int:
    """A regime map: every cell is an ordinary experiment; the launcher flags apply to each cell's experiment."""
    from semid.study.regimes import run_regimes  # deferred, as in _run

    if args.seeds:  # a map's seeds are per cell: one seed everywhere, paper_seeds at the paper cell
        raise SemidError(f"--seeds {args.seeds}: a regime map sets its seeds per cell; use --set "
                         f"experiment.seeds=[...] (every cell) or --set paper_seeds=[...] (the paper cell)")
    overrides = list(args.overrides) + [f"experiment.launcher.{key}={getattr(args, flag)}"
                                        for flag, key in _LAUNCHER_FLAGS.items() if getattr(args, flag) is not None]
    md = run_regimes(args.preset, args.out, overrides, log=lambda m: print(f"  {m}", flush=True))
    print(f"report: {md}")
    return 0
