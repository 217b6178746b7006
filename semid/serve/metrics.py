"""``GET /metrics``: the server's counters in the Prometheus text format (``prometheus_client``).

| metric | type | labels | what |
| --- | --- | --- | --- |
| ``semid_http_requests_total`` | counter | method, path, status | answered requests (path: an endpoint, or ``other``) |
| ``semid_http_request_duration_seconds`` | histogram | path | from the request head to the last byte of the answer |
| ``semid_http_requests_in_flight`` | gauge | | requests being read, queued, scored or answered |
| ``semid_score_queue_depth`` | gauge | | ``POST /score`` requests holding or waiting for a worker |
| ``semid_scored_items_total`` | counter | status | candidates scored: known, new (represented on the fly), unknown (empty representation: the fallback of ``allow_unknown``) |
| ``semid_new_item_cache_{hits,misses,replaced,evictions}_total`` | counter | | the new-item LRU (``new_items.py``) |
| ``semid_new_item_cache_entries`` / ``_capacity`` | gauge | | its size and bound |

Each server has its own registry (several servers in one process, as in the tests, do not mix counts).

Example::

    >>> m = ServeMetrics(lambda: None)
    >>> m.requests.labels("GET", "/healthz", "200").inc()
    >>> b'semid_http_requests_total{method="GET",path="/healthz",status="200"} 1.0' in m.render()
    True
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semid.serve.new_items import CacheStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PATHS = ("/score", "/healthz", "/readyz", "/schema", "/metrics", "/openapi.json", "/docs")
# from a batch-1 request (~2 ms on a quiet 2-core CPU) to a batch scored behind a full queue
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CacheReading = Callable[[], "tuple[CacheStats, int, int] | None"]


class ServeMetrics:
    """The server's metrics; ``cache`` reads the scorer's new-item cache at scrape time (None before loading)."""

    def __init__(self, cache: CacheReading) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("semid_http_requests", "Answered HTTP requests", ["method", "path", "status"],
                                registry=r)
        self.latency = Histogram("semid_http_request_duration_seconds", "Request head to last byte of the answer",
                                 ["path"], buckets=BUCKETS, registry=r)
        self.in_flight = Gauge("semid_http_requests_in_flight", "Requests being read, queued, scored or answered",
                               registry=r)
        self.queue = Gauge("semid_score_queue_depth", "POST /score requests holding or waiting for a worker",
                           registry=r)
        self.scored = Counter("semid_scored_items", "Candidates scored, by status (unknown: the allow_unknown "
                              "fallback, an empty representation)", ["status"], registry=r)
        r.register(_CacheCollector(cache))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _CacheCollector(Collector):
    """Reads the scorer's own counters when scraped, so they are counted once, where they happen."""

    def __init__(self, read: CacheReading) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        got = self.read()
        stats, size, cap = got if got is not None else (CacheStats(), 0, 0)
        for name, text in (("hits", "Uses of a cached new item"), ("misses", "New items encoded (not cached, or "
                           "cached from another embedding)"), ("replaced", "Cached new items encoded again from a "
                           "changed embedding"), ("evictions", "Least recently used new items dropped")):
            yield CounterMetricFamily(f"semid_new_item_cache_{name}", text, value=getattr(stats, name))
        yield GaugeMetricFamily("semid_new_item_cache_entries", "New items held", value=size)
        yield GaugeMetricFamily("semid_new_item_cache_capacity", "New items held at most", value=cap)


class MetricsMiddleware:
    """Counts every HTTP request by its answer's status, times it and tracks the ones in flight (pure ASGI, so
    it also sees the answers of the limits middleware and of errors)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in PATHS else "other"
        status = "500"  # an exception before any answer: uvicorn answers 500
        t0 = time.perf_counter()

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        m = self.metrics
        m.in_flight.inc()
        try:
            await self.app(scope, receive, counting_send)
        finally:
            m.in_flight.dec()
            m.requests.labels(scope["method"], path, status).inc()
            m.latency.labels(path).observe(time.perf_counter() - t0)
