"""``semid serve-bench MODEL_DIR ...``: scoring latency (p50, p99) and requests/s per batch size, per artifact.

Two paths per (artifact, batch size): ``in-process`` (``Scorer.score`` on request arrays: history cap, item
lookup, KJT, ranker forward) and ``http`` (a ``ModelServer`` on 127.0.0.1 and one keep-alive client: JSON
encoding of the answer, the socket round trip and the client's JSON decoding on top; the request bodies are
encoded before timing). Requests are drawn from the artifact's own items (seeded): uniform candidates, 10% without
a watch item, histories of uniform length up to the schema's cap, so no corpus is needed.

Each (batch size, path) cell gives every artifact ``seconds`` of timed calls (at least ``min_calls``), taken in
``rounds`` turns in shuffled order so that the shared machine's drift hits all artifacts alike; the figures are
per call. The machine's load is recorded with the results: read ratios within one run, not absolutes across runs.
"""
from __future__ import annotations

import http.client
import json
import os
import platform
import random
import time
from pathlib import Path
import numpy as np
import torch

from semid.core.artifacts import write_json
from semid.serve.records import ServeBench, ServeBenchRow
from semid.serve.artifact import Artifact, load_artifact
from semid.serve.requests import Requests
from semid.serve.scorer import Scorer
from semid.serve.server import ModelServer
from semid.serve.settings import ServeSettings

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


class _Contender:
    """One artifact's two paths: its scorer in process and its server over HTTP."""

    def __init__(self, artifact: Artifact, batch_sizes: list[int], paths: tuple[str, ...], seed: int) -> None:
        self.artifact = artifact
        self.scorer = Scorer(artifact)
        n_batches = 8  # distinct batches cycled, so a cell does not time one cached input
        self.batches = {b: [synthetic_requests(artifact, b, seed=seed * 1000 + b * 10 + i) for i in range(n_batches)]
                        for b in batch_sizes}
        self.bodies = {b: [json_body(r) for r in rs] for b, rs in self.batches.items()} if "http" in paths else {}
        self.server = ModelServer(artifact, ServeSettings(port=0)).start() if "http" in paths else None
        self.conn: http.client.HTTPConnection | None = None
        if self.server is not None:
            self.server.state.loaded.wait()
            host, port = self.server.address
            self.conn = http.client.HTTPConnection(str(host), int(port), timeout=120)

    def call(self, path: str, batch: int, i: int) -> None:
        if path == "in-process":
            self.scorer.score(self.batches[batch][i % len(self.batches[batch])])
            return
        assert self.conn is not None
        self.conn.request("POST", "/score", self.bodies[batch][i % len(self.bodies[batch])],
                          {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"POST /score answered {resp.status}: {data[:200]!r}")
        json.loads(data)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.server is not None:
            self.server.shutdown()


def _cell(contenders: list[_Contender], path: str, batch: int, seconds: float, min_calls: int, rounds: int,
          rng: random.Random) -> list[list[float]]:
    """Per contender, the latency of every timed call. The contenders take turns, ``rounds`` times in shuffled
    order (as ``semid.bench.timing.interleaved``), so a slow minute of the shared machine slows them alike."""
    lat: list[list[float]] = [[] for _ in contenders]
    for c in contenders:  # first calls allocate, start threads and pick kernels
        for i in range(3):
            c.call(path, batch, i)
    per_round = seconds / rounds
    for _ in range(rounds):
        order = list(range(len(contenders)))
        rng.shuffle(order)
        for k in order:
            spent, calls = 0.0, 0
            while (spent < per_round or calls < max(1, min_calls // rounds)) and len(lat[k]) < MAX_CALLS:
                t0 = time.perf_counter()
                contenders[k].call(path, batch, len(lat[k]))
                lat[k].append(time.perf_counter() - t0)
                spent += lat[k][-1]
                calls += 1
    return lat


def run_bench(model_dirs: list[Path], batch_sizes: list[int], *, seconds: float = 2.0, min_calls: int = 20,
              rounds: int = 5, paths: tuple[str, ...] = PATHS, threads: int | None = None, out: Path | None = None,
              seed: int = 0) -> ServeBench:
    """One row per (artifact, batch size, path): calls, p50 / p99 ms, requests/s (``seconds`` of timed calls per
    artifact and cell, at least ``min_calls``)."""
    if threads:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()
    contenders = [_Contender(load_artifact(d), batch_sizes, paths, seed) for d in model_dirs]
    rng = random.Random(seed)
    rows: list[ServeBenchRow] = []
    try:
        for b in batch_sizes:
            for path in paths:
                for c, lat in zip(contenders, _cell(contenders, path, b, seconds, min_calls, rounds, rng)):
                    a = np.asarray(lat)
                    rows.append({"model": str(c.artifact.path), "representation": c.artifact.schema.representation,
                                 "quantization": c.artifact.schema.quantization, "path": path, "batch": b,
                                 "calls": len(a), "p50_ms": float(np.percentile(a, 50) * 1e3),
                                 "p99_ms": float(np.percentile(a, 99) * 1e3),
                                 "requests_per_s": float(b * len(a) / a.sum())})
    finally:
        for c in contenders:
            c.close()
    rows.sort(key=lambda r: (r["representation"], r["quantization"], r["batch"], PATHS.index(r["path"])))
    result: ServeBench = {
        "rows": rows, "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                  "torch": torch.__version__, "python": platform.python_version(),
                                  "load_before": load_before, "load_after": os.getloadavg()},
        "seconds_per_cell": seconds, "min_calls": min_calls, "rounds": rounds}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "serve.json", result)
        (out / "serve.md").write_text(render_markdown(result))
    return result


def render_markdown(result: ServeBench) -> str:
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
