"""``semid serve-bench MODEL_DIR ...``: scoring latency (p50, p99) and requests/s per batch size, per artifact.

Two paths per (artifact, batch size): ``in-process`` (``Scorer.score`` on request arrays: history cap, item
lookup, KJT, ranker forward) and ``http`` (a ``ModelServer`` on 127.0.0.1 and one keep-alive client: JSON
encoding of the answer, the socket round trip and the client's JSON decoding on top; the request bodies are
encoded before timing). Requests are drawn from the artifact's own items (seeded): uniform candidates, 10% without
a watch item, histories of uniform length up to the schema's cap, so no corpus is needed.

Each cell runs until it has ``min_calls`` calls and ``seconds`` of timed work; the figures are per call. The
machine is shared and its load is recorded with the results: read ratios within one run, not absolutes across runs.
"""
from __future__ import annotations

import http.client
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semid.core.artifacts import write_json
from semid.serve.artifact import Artifact, load_artifact
from semid.serve.requests import Requests
from semid.serve.scorer import Scorer
from semid.serve.server import ModelServer

MAX_CALLS = 5000
PATHS = ("in-process", "http")


def synthetic_requests(artifact: Artifact, n: int, seed: int = 0) -> Requests:
    """``n`` requests over the artifact's known items (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ids = artifact.items.item_id
    cap = artifact.schema.history_length
    lengths = rng.integers(0, cap + 1, n)
    return Requests(item_id=rng.choice(ids, n), watch_item_id=np.where(rng.random(n) < 0.1, -1, rng.choice(ids, n)),
                    history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                    history_item_ids=rng.choice(ids, int(lengths.sum())),
                    day=np.full(n, artifact.schema.default_day, np.int64), first_day=np.full(n, -1, np.int64),
                    embedding=None, has_embedding=np.zeros(n, bool))


def json_body(req: Requests) -> bytes:
    h = req.history_offsets
    rows = [{"item_id": int(c), "watch_item_id": int(w) if w >= 0 else None,
             "history_item_ids": req.history_item_ids[h[i]:h[i + 1]].tolist(), "day": int(d)}
            for i, (c, w, d) in enumerate(zip(req.item_id, req.watch_item_id, req.day))]
    return json.dumps({"requests": rows}).encode()


def _time(call: Any, batches: list[Any], seconds: float, min_calls: int, warmup: int = 3) -> list[float]:
    for i in range(warmup):
        call(batches[i % len(batches)])
    lat: list[float] = []
    spent = 0.0
    while (spent < seconds or len(lat) < min_calls) and len(lat) < MAX_CALLS:
        b = batches[len(lat) % len(batches)]
        t0 = time.perf_counter()
        call(b)
        lat.append(time.perf_counter() - t0)
        spent += lat[-1]
    return lat


def bench_artifact(artifact: Artifact, batch_sizes: list[int], *, seconds: float = 2.0, min_calls: int = 20,
                   paths: tuple[str, ...] = PATHS, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (path, batch size): calls, p50 / p99 ms, requests/s."""
    n_batches = 8  # distinct batches cycled, so a cell does not time one cached input
    rows = []
    scorer = Scorer(artifact)
    pools = {b: [synthetic_requests(artifact, b, seed=seed * 1000 + b * 10 + i) for i in range(n_batches)]
             for b in batch_sizes}
    server = ModelServer(artifact, port=0).start() if "http" in paths else None
    try:
        if server is not None:
            server.loaded.wait()
            host, port = server.httpd.server_address[:2]
            conn = http.client.HTTPConnection(str(host), int(port), timeout=120)
        for b in batch_sizes:
            for path in paths:
                if path == "in-process":
                    lat = _time(scorer.score, pools[b], seconds, min_calls)
                else:
                    bodies = [json_body(r) for r in pools[b]]

                    def post(body: bytes) -> None:
                        conn.request("POST", "/score", body, {"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        data = resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"POST /score answered {resp.status}: {data[:200]!r}")
                        json.loads(data)

                    lat = _time(post, bodies, seconds, min_calls)
                a = np.asarray(lat)
                rows.append({"model": str(artifact.path), "representation": artifact.schema.representation,
                             "quantization": artifact.schema.quantization, "path": path, "batch": b, "calls": len(a),
                             "p50_ms": float(np.percentile(a, 50) * 1e3), "p99_ms": float(np.percentile(a, 99) * 1e3),
                             "requests_per_s": float(b * len(a) / a.sum())})
    finally:
        if server is not None:
            server.shutdown()
    return rows


def run_bench(model_dirs: list[Path], batch_sizes: list[int], *, seconds: float = 2.0, min_calls: int = 20,
              paths: tuple[str, ...] = PATHS, threads: int | None = None, out: Path | None = None,
              seed: int = 0) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()
    rows = []
    for d in model_dirs:
        rows += bench_artifact(load_artifact(d), batch_sizes, seconds=seconds, min_calls=min_calls, paths=paths,
                               seed=seed)
    result = {"rows": rows, "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                        "torch": torch.__version__, "python": platform.python_version(),
                                        "load_before": load_before, "load_after": os.getloadavg()},
              "seconds_per_cell": seconds, "min_calls": min_calls}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "serve.json", result)
        (out / "serve.md").write_text(render_markdown(result))
    return result


def render_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads); load average "
             f"{m['load_before'][0]:.1f} before, {m['load_after'][0]:.1f} after", "",
             "| representation | tables | batch | path | p50 ms | p99 ms | requests/s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['representation']} | {r['quantization']} | {r['batch']:,} | {r['path']} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
