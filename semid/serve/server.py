"""``semid serve MODEL_DIR``: the artifact's ``Scorer`` behind a small HTTP/1.1 JSON endpoint.

| method, path | answer |
| --- | --- |
| ``POST /score`` | ``{"requests": [{"item_id": 1, "watch_item_id": 2, "history_item_ids": [3, 4], "embedding": [...]}],`` ``"allow_unknown": false}`` -> ``{"model": ..., "scores": [{"ctr": p, "engaged": p, "ctr_logit": x, "engaged_logit": x, "status": "known", "sid": [...]}]}`` |
| ``GET /healthz`` | 200 while the process serves (liveness) |
| ``GET /readyz`` | 200 once the model is loaded and warmed up, 503 before (or if loading failed, with the reason) |
| ``GET /schema`` | the feature schema (request fields, history cap, default day, ...) |

A bad request gets a 4xx and ``{"error": "<one line>"}``: 400 malformed JSON or fields, 411 no Content-Length,
413 a body over the limit, 422 an item the model cannot represent, 404 / 405 other paths and methods, 503 not
ready. An unexpected failure is a 500 whose body names only the exception type; the traceback goes to the log.

Why the standard library (``http.server``) and not FastAPI + uvicorn: scoring holds one lock around one torch
forward per batch, so an async framework buys no concurrency; the JSON checks live in ``requests.py`` anyway
(pydantic would duplicate them); and it adds no dependency to a project whose ``setup.cfg`` pins its stack.
``ThreadingHTTPServer`` keeps health checks answering while a batch scores.
"""
from __future__ import annotations

import errno
import json
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import numpy as np

from semid.core.errors import SemidError
from semid.core.records import JsonObject, JsonValue
from semid.serve.artifact import Artifact, load_artifact, schema_dict
from semid.serve.requests import RequestError, UnknownItemError, json_type, requests_from_json
from semid.serve.scorer import STATUS, Scorer

DEFAULT_MAX_BODY = 64 << 20  # bytes: 1024 requests with 256-d embeddings are ~3 MB of JSON


class ModelServer:
    """An HTTP server for one artifact. ``start()`` serves from a background thread (tests, benchmarks);
    ``serve_forever()`` from the calling one (``semid serve``). The model loads in the background, so
    ``/healthz`` answers at once and ``/readyz`` turns 200 when scoring can start."""

    def __init__(self, model: str | Path | Artifact, host: str = "127.0.0.1", port: int = 8000, *,
                 allow_unknown: bool = False, max_body_bytes: int = DEFAULT_MAX_BODY,
                 log: Callable[[str], None] | None = None) -> None:
        self.model, self.allow_unknown, self.max_body_bytes, self.log = model, allow_unknown, max_body_bytes, log
        self.scorer: Scorer | None = None
        self.load_error: str | None = None
        self.loaded = threading.Event()  # set when loading finished, successfully or not
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as e:
            hint = "choose another --port" if e.errno == errno.EADDRINUSE else "check --host and --port"
            raise SemidError(f"cannot listen on {host}:{port} ({e.strerror}); {hint}") from None
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def load(self) -> None:
        try:
            artifact = self.model if isinstance(self.model, Artifact) else load_artifact(self.model)
            scorer = Scorer(artifact, allow_unknown=self.allow_unknown)
            _warm_up(scorer)
            self.scorer = scorer
        except SemidError as e:
            self.load_error = str(e)
        finally:
            self.loaded.set()

    def start(self) -> "ModelServer":
        threading.Thread(target=self.load, name="semid-serve-load", daemon=True).start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="semid-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        threading.Thread(target=self.load, name="semid-serve-load", daemon=True).start()
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- what the handler calls ---------------------------------------------------------------------------

    def readiness(self) -> tuple[int, JsonObject]:
        if self.scorer is not None:
            a = self.scorer.artifact
            return 200, {"status": "ready", "model": a.fingerprint, "representation": a.schema.representation,
                         "quantization": a.schema.quantization}
        if self.load_error is not None:
            return 503, {"status": "failed", "error": self.load_error}
        return 503, {"status": "loading"}

    def score(self, body: JsonValue) -> tuple[int, JsonObject]:
        scorer = self.scorer
        if scorer is None:
            return 503, {"error": self.load_error or "the model is still loading (poll /readyz)"}
        allow = self.allow_unknown
        if isinstance(body, dict) and "allow_unknown" in body:
            body = dict(body)
            allow = body.pop("allow_unknown")
            if not isinstance(allow, bool):
                raise RequestError(f"allow_unknown must be true or false, not {json_type(allow)}")
        req = requests_from_json(body, scorer.schema)
        s = scorer.score(req, where="request", allow_unknown=allow)
        probs = s.probabilities
        tasks = scorer.schema.tasks
        rows: list[JsonObject] = [
            {**{t: float(p) for t, p in zip(tasks, pr)}, **{f"{t}_logit": float(x) for t, x in zip(tasks, lr)},
             "status": STATUS[st]} for pr, lr, st in zip(probs.tolist(), s.logits.tolist(), s.status.tolist())]
        if s.sid is not None:
            for row, sid in zip(rows, s.sid.tolist()):
                row["sid"] = sid if sid[0] >= 0 else None
        return 200, {"model": scorer.artifact.fingerprint, "scores": rows}


def _warm_up(scorer: Scorer) -> None:
    """One request through every path before /readyz says ready: the first forward allocates and picks kernels."""
    from semid.serve.requests import Requests

    item = scorer.artifact.items.item_id[:1]
    day = np.full(1, scorer.schema.default_day, np.int64)
    scorer.score(Requests(item, np.full(1, -1, np.int64), np.array([0, 1], np.int64), item, day,
                          np.full(1, -1, np.int64), None, np.zeros(1, bool)))


def _handler(app: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
        server_version = "semid-serve"

        def setup(self) -> None:
            super().setup()
            # headers and body go out as two writes: with Nagle's algorithm the body waits for the client's
            # delayed ACK of the headers (measured p50 at batch 1: 44 ms with Nagle, 5 ms without, on a loaded
            # 2-core machine)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, {"status": "ok"})
            elif path == "/readyz":
                self._send(*app.readiness())
            elif path == "/schema":
                if app.scorer is None:
                    self._send(*app.readiness())
                else:
                    self._send(200, schema_dict(app.scorer.schema))
            elif path == "/score":
                self._send(405, {"error": "/score takes POST with a JSON body"}, allow="POST")
            else:
                self._not_found(path)

        def do_POST(self) -> None:  # noqa: N802
            t0 = time.perf_counter()
            path = self.path.split("?", 1)[0]
            if path != "/score":
                if path in ("/healthz", "/readyz", "/schema"):
                    self._send(405, {"error": f"{path} takes GET"}, allow="GET")
                else:
                    self._not_found(path)
                return
            body = self._body()
            if body is None:
                return
            try:
                code, answer = app.score(body)
            except RequestError as e:
                code, answer = 400, {"error": _one_line(e)}
            except UnknownItemError as e:
                code, answer = 422, {"error": _one_line(e)}
            except SemidError as e:
                code, answer = 400, {"error": _one_line(e)}
            except Exception as e:  # noqa: BLE001 -- a bug must not kill the server nor leak a traceback
                traceback.print_exc(file=sys.stderr)
                code, answer = 500, {"error": f"internal error ({type(e).__name__}); the server log has the details"}
            self._send(code, answer)
            if app.log is not None:
                n = len(answer.get("scores", []))
                app.log(f"{self.client_address[0]} POST /score {code} {n} scored "
                        f"{1000 * (time.perf_counter() - t0):.1f} ms")

        def _method_not_allowed(self) -> None:
            self._send(405, {"error": f"{self.command} is not supported (GET /healthz, /readyz, /schema; POST /score)"},
                       allow="GET, POST")

        do_PUT = do_DELETE = do_PATCH = _method_not_allowed  # noqa: N815

        def _body(self) -> JsonValue:
            """The decoded JSON body, or None after answering why there is none."""
            length = self.headers.get("Content-Length")
            if length is None:
                self._send(411, {"error": "a Content-Length header is required"})
                return None
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                self._send(400, {"error": f"Content-Length {length!r} is not a byte count"})
                return None
            if n > app.max_body_bytes:
                self.close_connection = True  # the unread body would be taken for the next request
                self._send(413, {"error": f"the body has {n:,} bytes; at most {app.max_body_bytes:,} (send smaller "
                                          "batches)"})
                return None
            raw = self.rfile.read(n)
            try:
                return json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                self._send(400, {"error": f"the body is not UTF-8 ({e.reason} at byte {e.start})"})
            except json.JSONDecodeError as e:
                self._send(400, {"error": f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"})
            except RecursionError:
                self._send(400, {"error": "invalid JSON: nested too deeply"})
            return None

        def _not_found(self, path: str) -> None:
            self._send(404, {"error": f"no endpoint {path} (POST /score; GET /healthz, /readyz, /schema)"})

        def _send(self, code: int, obj: JsonObject, allow: str | None = None) -> None:
            data = (json.dumps(obj) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if allow:
                self.send_header("Allow", allow)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # http.server's own errors (a malformed request line, an unsupported method): JSON, one line, no HTML
            self.close_connection = True
            self._send(code, {"error": message or HTTPStatus(code).phrase})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # one line per scored batch is logged in do_POST (when a log is given)

    return Handler


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
