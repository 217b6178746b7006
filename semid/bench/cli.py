"""``semid bench ...``: embedding-lookup and pipeline benchmarks (JSON + Markdown under ``--out``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping

from semid.bench.names import CONTENDERS, DEFAULT_CONTENDERS, DISTRIBUTIONS, LAYOUTS
from semid.core.errors import SemidError


def _ints(s: str) -> list[int]:
    try:
        return [int(x.replace("_", "")) for x in s.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _names(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: embedding lookups, pipeline stages")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="ACTION")

    p = bsub.add_parser("lookups", help="lookup throughput: TorchRec (world-size-1 fast path and plain DMP) vs "
                        "FBGEMM TBE vs nn.EmbeddingBag vs a bandwidth ceiling, per representation layout and table size")
    p.add_argument("--rows", type=_ints, default=[8192, 131072, 1048576],
                   help="total table rows of each layout, comma-separated (default 8192,131072,1048576)")
    p.add_argument("--batch", type=int, default=4096, help="samples per batch (default 4096)")
    p.add_argument("--dim", type=int, default=64, help="embedding dimension (default 64)")
    p.add_argument("--layouts", type=_names, default=list(LAYOUTS), help=f"subset of {','.join(LAYOUTS)}")
    p.add_argument("--distributions", type=_names, default=list(DISTRIBUTIONS),
                   help=f"id distributions: {','.join(DISTRIBUTIONS)}")
    p.add_argument("--contenders", type=_names, default=list(DEFAULT_CONTENDERS),
                   help=f"subset of {','.join(CONTENDERS)} (default: all but torchrec_dmp_tw)")
    p.add_argument("--levels", type=int, default=4, help="SID levels L (default 4; read from --sids when given)")
    p.add_argument("--history", type=int, default=20, help="items per history bag (default 20)")
    p.add_argument("--corpus", type=Path, help="with --sids: measure SPM bag lengths from a real token cache")
    p.add_argument("--sids", type=Path, help="SID table of --corpus (semid sids assign)")
    p.add_argument("--spm-representation", default="spm_8k", help="SPM preset for --corpus/--sids (default spm_8k)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians (default 5)")
    p.add_argument("--iters", type=int, default=5, help="batches per contender per round (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per contender first (default 2)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--dmp2", action="store_true", help="also DMP on 2 spawned processes (gloo, table_wise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench"),
                   help="writes lookups.json and lookups.md here (default runs/bench)")
    p.set_defaults(func=_lookups)

    p = bsub.add_parser("pipeline", help="pipeline stages: synthetic corpus, SPM token cache, RQ-VAE encoding, "
                        "ranker training (samples/s and peak memory, each in a child process)")
    p.add_argument("--corpus", type=Path, help="corpus for the later stages (default: the one the synth stage "
                   "writes under --out)")
    p.add_argument("--sids", type=Path, help="SID table of --corpus (needed by the spm stages)")
    p.add_argument("--rqvae", type=Path, help="frozen RQ-VAE (run dir or rqvae.pt) to time encoding with; default: "
                   "a briefly trained one of the same shape (encoding speed does not depend on training)")
    p.add_argument("--preset", default="small", help="synthetic corpus preset (default small)")
    p.add_argument("--stages", type=_names, default=None,
                   help="subset of synth,tokens,rqvae_encode,rank_fit (default: all)")
    p.add_argument("--representations", type=_names, default=["hash_8k", "spm_8k"],
                   help="ranker configs to train (default hash_8k,spm_8k)")
    p.add_argument("--train-days", type=_ints, default=[0, 1, 2], help="ranker training days (default 0,1,2)")
    p.add_argument("--threads", type=_ints, default=[1], help="torch threads per ranker run, comma-separated "
                   "(default 1)")
    p.add_argument("--devices", type=_ints, default=[1], help="processes per ranker run, e.g. 1,2 (default 1)")
    p.add_argument("--spm-representation", default="spm_8k", help="SPM preset of the tokens stage (default spm_8k)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra ranker config override for every run")
    p.add_argument("--out", type=Path, default=Path("runs/bench"),
                   help="writes pipeline.json and pipeline.md here (default runs/bench)")
    p.set_defaults(func=_pipeline)

    p = bsub.add_parser("scale", help="every stage from corpus to ranker at several corpus sizes (child processes: "
                        "wall time, peak RSS, throughput, growth exponents)")
    p.add_argument("--items", required=True, type=_sizes, help="corpus sizes, e.g. 1M,3M,10M (k and M suffixes)")
    p.add_argument("--preset", default="large", help="synthetic preset scaled to each size (default large)")
    p.add_argument("--set", dest="preset_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="generator override applied before scaling")
    p.add_argument("--reference", default="small", help="preset run unscaled as the ranker's throughput reference "
                   "(default small; 'none' for none)")
    p.add_argument("--corpora", type=Path, help="where corpora are generated and reused (default <out>/corpora)")
    p.add_argument("--rqvae-config", default="small", help="conf/rqvae preset of the sids_train stage (default small)")
    p.add_argument("--rqvae-steps", type=int, default=300, help="RQ-VAE training steps (default 300)")
    p.add_argument("--rqvae-set", dest="rqvae_overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--representations", type=_names, default=["hash_8k", "spm_8k"],
                   help="token caches and ranker fits (default hash_8k,spm_8k)")
    p.add_argument("--train-days", type=_ints, default=[0, 1], help="ranker training days; the next day evaluates "
                   "(default 0,1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each ranker fit (default 1)")
    p.add_argument("--bootstraps", type=int, default=0, help="trainer.num_bootstraps of the ranker fits (default 0)")
    p.add_argument("--rank-set", dest="rank_overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--stages", type=_names, default=None, help="subset of generate,validate,sids_train,sids_assign,"
                   "spm_fit,tokens,rank_fit (default all)")
    p.add_argument("--max-rss-gb", type=float, default=16.0,
                   help="kill a stage whose process tree holds more resident memory (default 16)")
    p.add_argument("--delete-corpora", action="store_true", help="remove each corpus this run generated after its "
                   "stages (a 10M-item corpus is ~11 GB)")
    p.add_argument("--fresh", action="store_true", help="measure every stage again (default: keep the stages a "
                   "previous run with the same settings measured)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-scale"), help="scale.json and scale.md here")
    p.set_defaults(func=_scale)

    p = bsub.add_parser("gpu", help="on a CUDA machine: FBGEMM TBE vs nn.EmbeddingBag lookups on the GPU, one "
                        "rank fit of spm_8k with NCCL, semid plan against the device (JSON + Markdown)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-gpu"), help="gpu.json and gpu.md here")
    p.add_argument("--corpus", type=Path, help="small corpus for the rank fit (default: generated under --out)")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="stop starting new checks once this many seconds have gone (default 450, under 8 minutes)")
    p.set_defaults(func=_gpu)

    p = bsub.add_parser("sid-module", help="SemanticIdCollection's remap (raw item ids -> SID pieces) added to a "
                        "ranker training step, against the precomputed token-cache KJT (ratio in one run)")
    p.add_argument("--items", type=int, default=50_000, help="catalogue size (default 50000, the small study's)")
    p.add_argument("--representation", default="spm_8k", help="conf/embeddings preset (default spm_8k)")
    p.add_argument("--batch", type=int, default=2048, help="samples per training step (default 2048)")
    p.add_argument("--history", type=int, default=0, help="items per history bag (default 0: no history)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds; figures are medians (default 7)")
    p.add_argument("--iters", type=int, default=5, help="steps per contender per round (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the study's fits)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"),
                   help="writes sid_module.json and sid_module.md here (default runs/bench)")
    p.set_defaults(func=_sid_module)

    p = bsub.add_parser("import", help="semid data import of generated CSV logs of several lengths with the same "
                        "rows per day (child processes: rows/s, peak RSS)")
    p.add_argument("--rows", type=_rows, default=[2_000_000, 10_000_000], help="log lengths (default 2M,10M)")
    p.add_argument("--rows-per-day", type=int, default=166_667, help="rows per day of every log (default 166667)")
    p.add_argument("--items", type=int, default=100_000, help="catalogue size (default 100000)")
    p.add_argument("--users", type=int, default=1_000_000, help="users (default 1000000)")
    p.add_argument("--work", type=Path, help="folder for the generated logs (default: under --out, deleted after)")
    p.add_argument("--keep", action="store_true", help="keep the generated logs and corpora")
    p.add_argument("--max-rss-gb", type=float, default=8.0, help="kill an import past this resident memory")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="import.json and import.md here")
    p.set_defaults(func=_import)


def _rows(s: str) -> list[int]:
    from semid.bench.scale import parse_size

    try:
        return [parse_size(x) for x in s.split(",") if x.strip()]
    except SemidError:
        raise argparse.ArgumentTypeError(f"expected log lengths such as 2M,10M, got {s!r}") from None


def _import(args: argparse.Namespace) -> int:
    from semid.bench.import_bench import ImportBenchConfig, render_markdown, run_import_bench

    cfg = ImportBenchConfig(out=args.out, rows=args.rows, rows_per_day=args.rows_per_day, items=args.items,
                            users=args.users, work=args.work, keep=args.keep, max_rss_gb=args.max_rss_gb)
    cfg.check()
    res = run_import_bench(cfg)
    _write_outputs(args.out, "import", res, render_markdown(res))
    return 0 if all(r["rc"] == 0 for r in res["runs"]) else 1


def _sizes(s: str) -> list[int]:
    from semid.bench.scale import parse_size

    try:
        return [parse_size(x) for x in s.split(",") if x.strip()]
    except SemidError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _scale(args: argparse.Namespace) -> int:
    from semid.bench.scale import ScaleBenchConfig, render_markdown, run_scale_bench

    cfg = ScaleBenchConfig(items=args.items, out=args.out, corpora=args.corpora, preset=args.preset,
                           preset_overrides=list(args.preset_overrides),
                           reference=None if args.reference.lower() == "none" else args.reference,
                           rqvae_config=args.rqvae_config, rqvae_steps=args.rqvae_steps,
                           rqvae_overrides=list(args.rqvae_overrides), representations=args.representations,
                           train_days=args.train_days, threads=args.threads, bootstraps=args.bootstraps,
                           rank_overrides=list(args.rank_overrides), stages=args.stages, max_rss_gb=args.max_rss_gb,
                           delete_corpora=args.delete_corpora, fresh=args.fresh)
    res = run_scale_bench(cfg)
    _write_outputs(args.out, "scale", res, render_markdown(res))
    return 0


def _gpu(args: argparse.Namespace) -> int:
    from semid.bench.gpu import GpuCheckConfig, render_markdown, run_gpu_check

    res = run_gpu_check(GpuCheckConfig(out=args.out, corpus=args.corpus, budget_s=args.budget_s))
    _write_outputs(args.out, "gpu", res, render_markdown(res))
    return 0 if res.get("ok") else 1


def _sid_module(args: argparse.Namespace) -> int:
    from semid.bench.sid_module import SidModuleBenchConfig, render_markdown, run_sid_module_bench

    cfg = SidModuleBenchConfig(items=args.items, representation=args.representation, batch=args.batch,
                               history=args.history, rounds=args.rounds, iters=args.iters, threads=args.threads)
    res = run_sid_module_bench(cfg)
    _write_outputs(args.out, "sid_module", res, render_markdown(res))
    return 0


def _lookups(args: argparse.Namespace) -> int:
    from semid.bench.lookups import LookupBenchConfig, render_markdown, run_lookup_bench, spm_lengths_from

    levels, spm, source = args.levels, None, "default: bag lengths uniform in 1..L"
    if (args.corpus is None) != (args.sids is None):
        raise SemidError("--corpus and --sids go together (SPM bag lengths come from a token cache built on them)")
    if args.sids is not None and "spm" in args.layouts:
        from semid.rqvae import read_sid_table

        levels = read_sid_table(args.sids).levels
        spm, source = spm_lengths_from(args.corpus, args.sids, args.spm_representation)
        print(f"SPM bag lengths: {source}")
    cfg = LookupBenchConfig(layouts=args.layouts, rows=args.rows, distributions=args.distributions,
                            contenders=args.contenders, batch=args.batch, dim=args.dim, levels=levels,
                            history=args.history, spm_lengths=spm, spm_source=source, rounds=args.rounds,
                            iters=args.iters, warmup=args.warmup, device=args.device, threads=args.threads,
                            dmp2=args.dmp2, seed=args.seed)
    res = run_lookup_bench(cfg)
    _write_outputs(args.out, "lookups", res, render_markdown(res))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from semid.bench.pipeline import PipelineBenchConfig, render_markdown, run_pipeline_bench

    cfg = PipelineBenchConfig(out=args.out, preset=args.preset, corpus=args.corpus, sids=args.sids,
                              rqvae=args.rqvae, stages=args.stages, representations=args.representations,
                              train_days=args.train_days, threads=args.threads, devices=args.devices,
                              overrides=list(args.overrides), spm_representation=args.spm_representation)
    res = run_pipeline_bench(cfg)
    _write_outputs(args.out, "pipeline", res, render_markdown(res))
    return 0


def _write_outputs(out: Path, stem: str, result: Mapping[str, object], markdown: str) -> None:
    """``<stem>.json`` and ``<stem>.md`` in ``out`` (each written atomically), then the table on stdout."""
    from semid.core.artifacts import atomic_path, write_json

    write_json(out / f"{stem}.json", result)
    with atomic_path(out / f"{stem}.md") as tmp:
        tmp.write_text(markdown + "\n")
    print(markdown)
    print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.md'}")
