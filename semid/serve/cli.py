"""``semid export``, ``semid score``, ``semid serve``, ``semid serve-bench`` and ``semid requests``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _ints(s: str) -> list[int]:
    try:
        out = [int(x.replace("_", "")) for x in s.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="a trained run as one self-contained, fingerprinted model directory")
    p.add_argument("run", type=Path, help="run directory of `semid rank fit`")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--int8", action="store_true", help="int8 row-wise tables (TorchRec quantized EmbeddingBagCollection)")
    p.add_argument("--rqvae", type=Path, help="the frozen RQ-VAE (run directory or rqvae.pt) that made the run's SIDs "
                   "(default: the rqvae.pt next to the run's SID table)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--check", action="store_true", help="then score the run's evaluation day through the export and "
                   "through the training code, and compare (needs the corpus)")
    p.set_defaults(func=_export)

    p = sub.add_parser("score", help="score a Parquet file of requests with an exported model")
    p.add_argument("model", type=Path, help="model directory of `semid export`")
    p.add_argument("--requests", type=Path, required=True, help="Parquet: item_id, and optionally watch_item_id, "
                   "history_item_ids (list), embedding (list of floats, for items the model does not know), day, "
                   "first_day; other columns are copied to the output")
    p.add_argument("--out", type=Path, required=True, help="Parquet to write: the request columns + ctr, engaged, "
                   "*_logit, status (known/new/unknown), sid")
    p.add_argument("--batch-size", type=int, default=4096, help="requests per batch (default 4096)")
    p.add_argument("--allow-unknown", action="store_true", help="score items the model cannot represent with an "
                   "empty representation instead of refusing them")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--json", type=Path, help="also write the summary as JSON")
    p.set_defaults(func=_score)

    p = sub.add_parser("serve", help="an HTTP endpoint scoring JSON batches (POST /score; GET /healthz, /readyz)")
    p.add_argument("model", type=Path, help="model directory of `semid export`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--allow-unknown", action="store_true", help="default for requests that do not say")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body accepted (default 64)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no line per scored batch")
    p.set_defaults(func=_serve)

    p = sub.add_parser("serve-bench", help="scoring latency (p50/p99) and requests/s per batch size, in process and "
                       "over HTTP")
    p.add_argument("models", type=Path, nargs="+", help="model directories of `semid export`")
    p.add_argument("--batch-sizes", type=_ints, default=[1, 64, 1024], help="default 1,64,1024")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per model and cell (default 2)")
    p.add_argument("--min-calls", type=int, default=20, help="calls per cell at least (default 20)")
    p.add_argument("--rounds", type=int, default=5, help="turns the models take per cell, in shuffled order "
                   "(default 5)")
    p.add_argument("--no-http", action="store_true", help="in-process scoring only")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=Path("runs/serve-bench"), help="writes serve.json and serve.md here")
    p.set_defaults(func=_bench)

    p = sub.add_parser("requests", help="a corpus day's impressions as scoring requests (history from earlier days)")
    p.add_argument("corpus", type=Path)
    p.add_argument("--day", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="Parquet to write")
    p.add_argument("--history-length", type=int, default=50, help="history items kept per user (default 50, the "
                   "ranker default; the scorer keeps the last history_length of its schema)")
    p.set_defaults(func=_requests)


def _export(args: argparse.Namespace) -> int:
    from semid.core.quiet import quiet_libraries
    from semid.serve.artifact import load_artifact
    from semid.serve.export import export_run

    with quiet_libraries():
        out = export_run(args.run, args.out, int8=args.int8, rqvae=args.rqvae, overwrite=args.overwrite)
        a = load_artifact(out)
    m = a.manifest
    size = sum(p["bytes"] for p in m["parts"].values())
    tables = ", ".join(f"{n} {r:,}x{d}" for n, (r, d) in m["tables"].items()) or "none (Dense Input)"
    print(f"wrote {out}: {a.name}, {m['items']:,} items, tables {tables}, {size / 1e6:.2f} MB; fingerprint "
          f"{a.fingerprint}")
    if args.check:
        from semid.serve.parity import check_parity

        with quiet_libraries():
            r = check_parity(args.run, a)
        diff = ", ".join(f"{t} {v:.2e}" for t, v in r["max_abs_logit_diff"].items())
        fmt = lambda v: "undefined" if v is None else f"{v:.6f}"  # noqa: E731
        print(f"parity on day {r['eval_day']} ({r['impressions']:,} impressions): max |logit export - training code| "
              f"{diff}; CTR AUC overall export {fmt(r['ctr_auc_overall']['export'])} vs run "
              f"{fmt(r['ctr_auc_overall']['run'])}, new {fmt(r['ctr_auc_new']['export'])} vs "
              f"{fmt(r['ctr_auc_new']['run'])}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from semid.core.artifacts import write_json
    from semid.core.quiet import quiet_libraries
    from semid.serve.score import score_file, summary_line

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with quiet_libraries():
        summary = score_file(args.model, args.requests, args.out, batch_size=args.batch_size,
                             allow_unknown=args.allow_unknown)
    print(summary_line(summary))
    if args.json:
        write_json(args.json, summary)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from semid.core.quiet import quiet_libraries
    from semid.serve.server import ModelServer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    server = ModelServer(args.model, args.host, args.port, allow_unknown=args.allow_unknown,
                         max_body_bytes=int(args.max_body_mb * (1 << 20)), log=log)
    print(f"serving {args.model} on {server.url} (POST /score; GET /healthz, /readyz, /schema); Ctrl-C stops",
          flush=True)
    try:
        with quiet_libraries():
            server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.httpd.server_close()
    return 0


def _bench(args: argparse.Namespace) -> int:
    from semid.core.quiet import quiet_libraries
    from semid.serve.bench import PATHS, render_markdown, run_bench

    with quiet_libraries():
        result = run_bench(args.models, args.batch_sizes, seconds=args.seconds, min_calls=args.min_calls,
                           rounds=max(1, args.rounds), paths=("in-process",) if args.no_http else PATHS, threads=args.threads, out=args.out)
    print(render_markdown(result), end="")
    print(f"results: {args.out / 'serve.json'}, {args.out / 'serve.md'}")
    return 0


def _requests(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from semid.core.artifacts import atomic_path
    from semid.core.quiet import quiet_libraries
    from semid.serve.parity import day_requests

    with quiet_libraries():
        table = day_requests(args.corpus, args.day, args.history_length)
    with atomic_path(args.out) as tmp:
        pq.write_table(table, tmp)
    print(f"wrote {args.out}: {len(table):,} requests of day {args.day}")
    return 0
