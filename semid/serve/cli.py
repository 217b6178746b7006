"""``semid export``, ``semid score``, ``semid serve``, ``semid serve-bench`` and ``semid requests``."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from semid.core.errors import SemidError
from semid.serve.settings import ServeSettings as ServeSettingsDefaults


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

    p = sub.add_parser("serve", help="an HTTP endpoint scoring JSON batches (POST /score; GET /healthz, /readyz, "
                       "/metrics)", description="Serves an exported model with uvicorn + FastAPI. SIGTERM or Ctrl-C "
                       "drains: new connections are refused, requests in progress finish; exit 143 (SIGTERM) or "
                       "130 (SIGINT).")
    p.add_argument("model", type=Path, help="model directory of `semid export`")
    d = ServeSettingsDefaults
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0 picks a free one)")
    p.add_argument("--allow-unknown", action="store_true", help="default for requests that do not say")
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / (1 << 20),
                   help=f"largest request body accepted, else 413 (default {d.max_body_bytes >> 20})")
    p.add_argument("--backlog", type=int, default=d.backlog, help=f"pending connections queued by the kernel "
                   f"(default {d.backlog})")
    p.add_argument("--max-connections", type=int, default=d.max_connections, help="open connections beyond which "
                   f"requests get 503 (default {d.max_connections})")
    p.add_argument("--workers", type=int, default=d.workers, help=f"scoring threads (default {d.workers})")
    p.add_argument("--queue", type=int, default=d.queue, help="requests waiting for a scoring thread beyond which "
                   f"POST /score answers 503 (default {d.queue})")
    p.add_argument("--header-timeout", type=float, default=d.header_timeout, help="seconds for a request head to "
                   f"arrive, else 408 (default {d.header_timeout:g})")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout, help="seconds for a whole body to arrive, "
                   f"else 408 (default {d.body_timeout:g})")
    p.add_argument("--keep-alive", type=float, default=d.keep_alive, help="seconds an idle connection stays open "
                   f"(default {d.keep_alive:g})")
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout, help="on SIGTERM, seconds requests in "
                   f"progress may take to finish (default {d.drain_timeout:g})")
    p.add_argument("--new-item-cache", type=int, default=d.new_item_cache, help="new items remembered, least "
                   f"recently used evicted (default {d.new_item_cache:,})")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no line per scored batch")
    p.set_defaults(func=_serve)

    p = sub.add_parser("serve-bench", help="scoring latency (p50/p99) and requests/s per batch size, in process and "
                       "over HTTP; with --clients, a load test of concurrent clients over 127.0.0.1")
    p.add_argument("models", type=Path, nargs="+", help="model directories of `semid export`")
    p.add_argument("--batch-sizes", type=_ints, default=[1, 64, 1024], help="default 1,64,1024")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per model and cell, or per load level "
                   "(default 2)")
    p.add_argument("--min-calls", type=int, default=20, help="calls per cell at least (default 20)")
    p.add_argument("--rounds", type=int, default=5, help="turns the models take per cell, in shuffled order "
                   "(default 5)")
    p.add_argument("--no-http", action="store_true", help="in-process scoring only")
    p.add_argument("--clients", type=_ints, help="load test instead: these numbers of concurrent keep-alive clients "
                   "(e.g. 1,4,16,64), each for --seconds per batch size, against a `semid serve` process")
    p.add_argument("--max-requests", type=int, default=200_000, help="load test: requests per level at most "
                   "(default 200,000)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=Path("runs/serve-bench"), help="writes serve.json and serve.md "
                   "(load test: load.json and load.md) here")
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
    from semid.core.interrupt import EXIT_CODES
    from semid.core.quiet import quiet_libraries
    from semid.serve.artifact import read_manifest
    from semid.serve.server import ModelServer
    from semid.serve.settings import ServeSettings

    settings = ServeSettings(
        host=args.host, port=args.port, allow_unknown=args.allow_unknown, backlog=args.backlog,
        max_connections=args.max_connections, workers=args.workers, queue=args.queue,
        max_body_bytes=int(args.max_body_mb * (1 << 20)), header_timeout=args.header_timeout,
        body_timeout=args.body_timeout, keep_alive=args.keep_alive, drain_timeout=args.drain_timeout,
        new_item_cache=args.new_item_cache)
    settings.check()
    if args.threads is not None and args.threads < 1:
        raise SemidError(f"--threads must be >= 1, got {args.threads}")
    read_manifest(args.model)  # a wrong path is one line now, not a 503 from /readyz later
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    server = ModelServer(args.model, settings, log=log, stop_on_load_error=True)
    print(f"serving {args.model} on {server.url} (POST /score; GET /healthz, /readyz, /schema, /metrics); Ctrl-C or "
          "SIGTERM drains and stops", flush=True)
    try:
        with quiet_libraries():
            stopped_by = server.serve_forever()
    finally:
        server.close()
    if server.state.load_error is not None:
        raise SemidError(server.state.load_error)
    if stopped_by is None:
        return 0
    name = signal.Signals(stopped_by).name
    print(f"semid: serve stopped by {name}: new connections refused, requests in progress answered", file=sys.stderr)
    return EXIT_CODES.get(stopped_by, 130)


def _bench(args: argparse.Namespace) -> int:
    from semid.core.quiet import quiet_libraries

    if args.seconds <= 0:
        raise SemidError(f"--seconds must be positive, got {args.seconds}")
    if args.clients:
        from semid.serve.loadtest import render_load_markdown, run_load

        if len(args.models) != 1:
            raise SemidError(f"--clients load-tests one model, got {len(args.models)} (name one model directory)")
        if args.max_requests < 1:
            raise SemidError(f"--max-requests must be >= 1, got {args.max_requests}")
        load = run_load(args.models[0], args.clients, args.batch_sizes, seconds=args.seconds,
                        max_requests=args.max_requests, threads=args.threads, out=args.out)
        print(render_load_markdown(load), end="")
        print(f"results: {args.out / 'load.json'}, {args.out / 'load.md'}")
        return 0 if load["errors"] == 0 else 1
    from semid.serve.bench import PATHS, render_markdown, run_bench

    with quiet_libraries():
        result = run_bench(args.models, args.batch_sizes, seconds=args.seconds, min_calls=args.min_calls,
                           rounds=max(1, args.rounds), paths=("in-process",) if args.no_http else PATHS,
                           threads=args.threads, out=args.out)
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
