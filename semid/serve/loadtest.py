"""``semid serve-bench MODEL --clients 1,4,16,64``: concurrent clients against a real ``semid serve`` process.

The server runs as its own process (``python -m semid.cli serve MODEL --port 0``, on 127.0.0.1 only), so the
clients do not share its interpreter lock. For each batch size and each number of clients N, N asyncio clients
each hold one keep-alive connection and send ``POST /score`` bodies (encoded before timing, as ``bench.py`` draws
them) back to back for ``seconds``; the level stops by itself at ``seconds`` or after ``max_requests`` requests,
whichever comes first, and every call has a 60 s timeout, so a run is bounded.

Per level: requests/s and items/s (requests x batch), p50 / p99 latency of the answered requests, errors (any
answer but 200, a timeout) and connection resets (reset, broken pipe, or a connection closed without an answer).
The summary compares the items/s of the most clients with the best single client's (over the batch sizes): the
target on a 2-core CPU is >= 0.9 with 0 errors. The machine's load average is recorded per level: the figures
are only comparable within one run.

Example (a 1 s level of 2 clients)::

    >>> r = run_load("runs/export/hash", [2], [8], seconds=1.0)  # doctest: +SKIP
    >>> r["errors"], r["levels"][0]["clients"]  # doctest: +SKIP
    (0, 2)
"""
from __future__ import annotations

import asyncio
import http.client
import itertools
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import h11
import numpy as np

from semid.core.artifacts import write_json
from semid.core.errors import SemidError
from semid.serve.artifact import load_artifact
from semid.serve.bench import _cpu, json_body, synthetic_requests
from semid.serve.records import LoadLevel, ServeLoad

RESETS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.RemoteDisconnected)
N_BODIES = 8  # distinct bodies cycled per batch size
CALL_TIMEOUT = 60.0  # seconds: a stuck request ends as an error, so a level always ends


class ServerProcess:
    """``semid serve MODEL`` on 127.0.0.1 and a free port, ready when the constructor returns; ``stop()`` sends
    SIGTERM (the drain) and returns the exit status."""

    def __init__(self, model: Path, extra: list[str] | None = None, log: Path | None = None,
                 ready_timeout: float = 180.0) -> None:
        cmd = [sys.executable, "-m", "semid.cli", "serve", str(model), "--host", "127.0.0.1", "--port", "0",
               "--quiet", *(extra or [])]
        self._log = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)
        try:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if " on http://127.0.0.1:" not in line:
                self.proc.wait(30)
                raise SemidError(f"`semid serve {model}` did not start ({self._last_words(log) or 'no output'})")
            self.port = int(line.split(" on http://127.0.0.1:")[1].split(" ")[0])
            deadline = time.monotonic() + ready_timeout
            while (status := self._ready()) != 200:
                if self.proc.poll() is not None:
                    raise SemidError(f"`semid serve {model}` stopped ({self._last_words(log) or 'no output'})")
                if time.monotonic() > deadline:
                    raise SemidError(f"`semid serve {model}` was not ready within {ready_timeout:g} s (status {status})")
                time.sleep(0.1)
        except BaseException:
            self.kill()
            raise

    def _last_words(self, log: Path | None) -> str:
        """The server's last stderr line (its one-line error), if it was logged."""
        if log is None or not log.exists():
            return ""
        self._log.flush()  # type: ignore[union-attr]
        lines = log.read_text().strip().splitlines()
        return lines[-1].removeprefix("semid: error: ") if lines else ""

    def _ready(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except OSError:
            return 0
        finally:
            conn.close()

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]


class _Client:
    """One keep-alive connection (asyncio streams + h11, uvicorn's own HTTP/1.1 library) sending ``bodies`` in
    turn. Why not ``http.client`` in threads: 64 client threads contending for one interpreter lock starved the
    server of requests (its CPU use fell from 0.9 to 0.5 core between 16 and 64 clients, at the same CPU per
    request), so the figures measured the client."""

    def __init__(self, port: int, bodies: list[bytes]) -> None:
        self.port, self.bodies = port, bodies
        self.latency: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors = self.resets = 0
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._h11: h11.Connection | None = None

    async def call(self, body: bytes) -> None:
        t0 = time.perf_counter()
        try:
            status = await asyncio.wait_for(self._exchange(body), CALL_TIMEOUT)
        except (*RESETS, h11.RemoteProtocolError, asyncio.IncompleteReadError):
            self.resets += 1
            await self._drop()
            return
        except (OSError, asyncio.TimeoutError, h11.LocalProtocolError):
            self.errors += 1
            await self._drop()
            return
        if status == 200:
            self.latency.append(time.perf_counter() - t0)
        else:
            self.errors += 1
            self.statuses[str(status)] += 1

    async def _exchange(self, body: bytes) -> int:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self.port)
            self._h11 = h11.Connection(h11.CLIENT)
        reader, writer = self._streams
        conn = self._h11
        assert conn is not None
        head = h11.Request(method="POST", target="/score", headers=[
            ("Host", "127.0.0.1"), ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        writer.write(conn.send(head) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        status = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(1 << 16))  # b"": the server closed
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("closed without an answer")
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            await self._drop()  # the server said Connection: close
        else:
            conn.start_next_cycle()
        return status

    async def _drop(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
            self._h11 = None


async def _level(port: int, bodies: list[bytes], clients: int, seconds: float,
                 max_requests: int) -> tuple[list[_Client], float]:
    budget = itertools.count()
    cs = [_Client(port, bodies[k % len(bodies):] + bodies[:k % len(bodies)]) for k in range(clients)]
    for c in cs:  # warm: every connection open and the path taken before timing
        await c.call(c.bodies[0])
        c.latency.clear()
    t0 = time.perf_counter()

    async def loop(c: _Client) -> None:
        i = 0
        while time.perf_counter() < t0 + seconds and next(budget) < max_requests:
            await c.call(c.bodies[i % len(c.bodies)])
            i += 1
        await c._drop()

    await asyncio.gather(*(loop(c) for c in cs))
    return cs, time.perf_counter() - t0


def run_level(port: int, bodies: list[bytes], batch: int, clients: int, seconds: float,
              max_requests: int) -> LoadLevel:
    """``clients`` concurrent clients for ``seconds`` (at most ``max_requests`` requests in all)."""
    load_before = os.getloadavg()[0]
    cs, wall = asyncio.run(_level(port, bodies, clients, seconds, max_requests))
    lat = np.asarray([x for c in cs for x in c.latency]) * 1e3
    statuses: Counter[str] = Counter()
    for c in cs:
        statuses.update(c.statuses)
    n = len(lat)
    return {"batch": batch, "clients": clients, "seconds": wall, "requests": n,
            "requests_per_s": n / wall if wall > 0 else 0.0, "items_per_s": n * batch / wall if wall > 0 else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if n else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if n else float("nan"),
            "errors": sum(c.errors for c in cs), "resets": sum(c.resets for c in cs),
            "statuses": dict(statuses), "load_before": load_before, "load_after": os.getloadavg()[0]}


def run_load(model_dir: str | Path, clients: list[int], batch_sizes: list[int], *, seconds: float = 5.0,
             max_requests: int = 200_000, threads: int | None = None, out: Path | None = None,
             seed: int = 0) -> ServeLoad:
    """Every (batch size, clients) level against one ``semid serve`` process (see the module docstring)."""
    model_dir = Path(model_dir)
    artifact = load_artifact(model_dir)
    bodies = {b: [json_body(synthetic_requests(artifact, b, seed=seed * 1000 + b * 10 + i)) for i in range(N_BODIES)]
              for b in batch_sizes}
    extra = ["--threads", str(threads)] if threads else []
    levels: list[LoadLevel] = []
    with tempfile.TemporaryDirectory() as tmp:  # the server's stderr; kept in ``out`` only after a whole run
        log = Path(tmp) / "server.log"
        server = ServerProcess(model_dir, extra, log=log)
        try:
            for b in batch_sizes:
                for c in clients:
                    levels.append(run_level(server.port, bodies[b], b, c, seconds, max_requests))
        finally:
            server.stop()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, out / "server.log")
    single = [lv["items_per_s"] for lv in levels if lv["clients"] == 1]
    most = max(clients)
    at_most = max(lv["items_per_s"] for lv in levels if lv["clients"] == most)
    best = max(single) if single else float("nan")
    result: ServeLoad = {
        "levels": levels, "model": str(model_dir), "representation": artifact.schema.representation,
        "quantization": artifact.schema.quantization,
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch_threads": threads or "torch's choice"},
        "seconds_per_level": seconds, "max_requests": max_requests,
        "errors": sum(lv["errors"] + lv["resets"] for lv in levels),
        "best_single_client_items_per_s": best, "most_clients": most, "most_clients_items_per_s": at_most,
        "ratio": at_most / best if single else float("nan")}
    if out is not None:
        write_json(out / "load.json", result)
        (out / "load.md").write_text(render_load_markdown(result))
    return result


def render_load_markdown(r: ServeLoad) -> str:
    m = r["machine"]
    lines = [f"{r['representation']} ({r['quantization']}), {m['cpu']}, {m['cores']} cores; server: `semid serve` "
             f"defaults; {r['seconds_per_level']:g} s per level", "",
             "| batch | clients | requests | requests/s | items/s | p50 ms | p99 ms | errors | resets | load avg |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for lv in r["levels"]:
        lines.append(f"| {lv['batch']:,} | {lv['clients']} | {lv['requests']:,} | {lv['requests_per_s']:,.0f} | "
                     f"{lv['items_per_s']:,.0f} | {lv['p50_ms']:.1f} | {lv['p99_ms']:.1f} | {lv['errors']} | "
                     f"{lv['resets']} | {lv['load_before']:.1f} -> {lv['load_after']:.1f} |")
    lines += ["", f"{r['most_clients']} clients: {r['most_clients_items_per_s']:,.0f} items/s = {r['ratio']:.2f} x the "
              f"best single client's {r['best_single_client_items_per_s']:,.0f} items/s; errors + resets: "
              f"{r['errors']}"]
    return "\n".join(lines) + "\n"
