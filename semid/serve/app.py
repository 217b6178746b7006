"""The ASGI app of ``semid serve`` (FastAPI on Starlette): the endpoints, their errors, the middleware stack.

| method, path | answer |
| --- | --- |
| ``POST /score`` | ``ScoreBody`` -> ``ScoreAnswer`` (``json_requests.py``) |
| ``GET /healthz`` | 200 while the process serves (liveness) |
| ``GET /readyz`` | 200 once the model is loaded and warmed up; 503 before, or with the reason loading failed |
| ``GET /schema`` | the feature schema (request fields, history cap, default day, ...) |
| ``GET /metrics`` | Prometheus text (``metrics.py``) |
| ``GET /openapi.json``, ``/docs`` | the generated OpenAPI schema and its browser |

Every error is ``{"error": "<one line>"}``: 400 a malformed body or field, 408 a body that did not arrive in
time, 411 no Content-Length, 413 a body over the limit, 422 an item the model cannot represent, 404 / 405 other
paths and methods, 503 not ready or at capacity (with ``Retry-After``). An unexpected failure is a 500 whose
body names only the exception type; its traceback goes to the server's stderr.

Middleware, outermost first: ``MetricsMiddleware`` (counts every answer, including the limits'), ``BodyLimits``
(the whole body within its size and time before any work), then the routes. ``POST /score`` validates and
scores on the ``ScoringPool``'s threads, so the event loop keeps accepting, answering health checks and reading
other bodies meanwhile.

Example::

    >>> from starlette.testclient import TestClient
    >>> app = create_app(ServeState(ServeSettings()))
    >>> TestClient(app).get("/readyz").json()
    {'status': 'loading'}
"""
from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from semid.core.errors import SemidError
from semid.serve.artifact import schema_dict
from semid.serve.json_requests import ErrorAnswer, ScoreAnswer, ScoreBody, encode_answer, parse_body
from semid.serve.limits import AtCapacity, BodyLimits, ScoringPool
from semid.serve.metrics import CONTENT_TYPE, MetricsMiddleware, ServeMetrics
from semid.serve.new_items import CacheStats
from semid.serve.requests import RequestError, UnknownItemError
from semid.serve.scorer import STATUS, Scorer
from semid.serve.settings import ServeSettings

ENDPOINTS = "POST /score; GET /healthz, /readyz, /schema, /metrics, /openapi.json"


@dataclass
class ServeState:
    """What the app serves: the scorer once loaded (or why loading failed), the settings, the metrics."""

    settings: ServeSettings
    log: Callable[[str], None] | None = None
    scorer: Scorer | None = None
    load_error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)  # set when loading ended, either way
    metrics: ServeMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServeMetrics(self.cache_reading)

    def cache_reading(self) -> tuple[CacheStats, int, int] | None:
        return None if self.scorer is None else self.scorer.cache_stats()

    def readiness(self) -> tuple[int, dict[str, object]]:
        if self.scorer is not None:
            a = self.scorer.artifact
            return 200, {"status": "ready", "model": a.fingerprint, "representation": a.schema.representation,
                         "quantization": a.schema.quantization}
        if self.load_error is not None:
            return 503, {"status": "failed", "error": self.load_error}
        return 503, {"status": "loading"}


class OneLineJSON(JSONResponse):
    """JSON on one line, ending in a newline (``curl`` output stays readable)."""

    def render(self, content: object) -> bytes:
        return super().render(content) + b"\n"


def create_app(state: ServeState) -> FastAPI:
    """The app serving ``state`` (its scorer may still be loading: ``/readyz`` says so)."""
    s = state.settings
    pool = ScoringPool(s.workers, s.queue, on_depth=state.metrics.queue.set)
    app = FastAPI(title="semid serve", summary="Scores ranking requests with an exported semid model.",
                  docs_url="/docs", redoc_url=None, default_response_class=OneLineJSON)
    app.state.pool = pool
    errors = {c: {"model": ErrorAnswer} for c in (400, 408, 411, 413, 422, 503)}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> OneLineJSON:
        return OneLineJSON(*reversed(state.readiness()))

    @app.get("/schema")
    def schema() -> OneLineJSON:
        if state.scorer is None:
            return OneLineJSON(*reversed(state.readiness()))
        return OneLineJSON(schema_dict(state.scorer.schema))

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/score", responses={200: {"model": ScoreAnswer}, **errors},  # type: ignore[dict-item]
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/ScoreBody"}}}}})
    async def score(request: Request) -> Response:
        t0 = time.perf_counter()
        scorer = state.scorer
        if scorer is None:
            return _error(503, state.load_error or "the model is still loading (poll /readyz)", retry=True)
        raw = await request.body()  # already read, within its limits, by BodyLimits
        try:
            code, data, n = await pool.run(_score, state, scorer, raw)
        except AtCapacity:
            return _error(503, f"the server is at capacity ({pool.workers} scoring, {pool.queue} queued); retry "
                               "shortly, or raise --queue / --workers", retry=True)
        if state.log is not None:
            client = request.client.host if request.client else "-"
            state.log(f"{client} POST /score {code} {n} scored {1000 * (time.perf_counter() - t0):.1f} ms")
        return Response(data, code, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 404:
            return _error(404, f"no endpoint {path} ({ENDPOINTS})")
        if exc.status_code == 405:
            allow = "POST" if path == "/score" else "GET"
            msg = "/score takes POST with a JSON body" if path == "/score" else f"{path} takes GET"
            return _error(405, msg, headers={"Allow": allow})
        return _error(exc.status_code, str(exc.detail))

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            _, defs = models_json_schema([(ScoreBody, "validation")], ref_template="#/components/schemas/{model}")
            doc.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimits, max_body_bytes=s.max_body_bytes, body_timeout=s.body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def _score(state: ServeState, scorer: Scorer, raw: bytes) -> tuple[int, bytes, int]:
    """(status, answer body, candidates scored) of one ``POST /score`` body (on a scoring thread)."""
    try:
        req, allow = parse_body(raw, scorer.schema)
        s = scorer.score(req, where="request", allow_unknown=allow)
        status = s.status.tolist()
        counts = np.bincount(s.status, minlength=len(STATUS))
        for name, c in zip(STATUS, counts.tolist()):
            if c:
                state.metrics.scored.labels(name).inc(c)
        data = encode_answer(scorer.artifact.fingerprint, scorer.schema.tasks, s.probabilities.tolist(),
                             s.logits.tolist(), [STATUS[i] for i in status],
                             None if s.sid is None else s.sid.tolist())
        return 200, data, len(status)
    except UnknownItemError as e:
        return 422, _line(e), 0
    except (RequestError, SemidError) as e:
        return 400, _line(e), 0
    except Exception as e:  # noqa: BLE001 -- a bug must not kill the server nor leak a traceback to the client
        traceback.print_exc(file=sys.stderr)
        return 500, _line(f"internal error ({type(e).__name__}); the server log has the details"), 0


def _line(e: BaseException | str) -> bytes:
    return (json.dumps({"error": " ".join(str(e).split())}) + "\n").encode()


def _error(code: int, error: str, *, retry: bool = False, headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    if retry:
        h["Retry-After"] = "1"
    return Response(_line(error), code, headers=h, media_type="application/json")
