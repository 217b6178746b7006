"""``ModelServer``: one exported model served over HTTP by uvicorn (``app.py`` has the endpoints).

The listening socket is opened in the constructor (a busy port is a ``SemidError`` before any work; port 0
picks a free one, ``address`` tells which); the model loads on a background thread, so ``/healthz`` answers at
once and ``/readyz`` turns 200 when scoring can start.

Stopping (SIGTERM or SIGINT to ``semid serve``, or ``shutdown()``): the listening socket closes (new connections
are refused), requests in progress finish and are answered with ``Connection: close``, an idle keep-alive
connection gets ``drain_idle`` seconds for the request its client may be sending right then, and after at most
``drain_timeout`` seconds whatever is left is cancelled. ``semid serve`` then exits 143 after SIGTERM and 130
after SIGINT, as every semid command stopped by a signal does.

Why uvicorn + FastAPI and not the standard library's ``ThreadingHTTPServer`` (which this replaced): the latter
listened with a backlog of 5 (20 concurrent clients got connection resets), had no timeouts (a client sending
fewer bytes than its Content-Length held a thread forever), no bound on threads, and no graceful shutdown.

Example::

    >>> from semid.serve.settings import ServeSettings
    >>> server = ModelServer("no/such/model", ServeSettings(port=0))
    >>> with server:
    ...     _ = server.state.loaded.wait(60)
    ...     server.state.readiness()[0]
    503
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import uvicorn

from semid.core.errors import SemidError
from semid.serve.app import ServeState, create_app
from semid.serve.artifact import Artifact, load_artifact
from semid.serve.http_server import DrainingServer, protocol_class
from semid.serve.scorer import Scorer
from semid.serve.settings import ServeSettings


class ModelServer:
    """An HTTP server for one artifact. ``start()`` serves from a background thread (tests, benchmarks);
    ``serve_forever()`` from the calling one (``semid serve``: it returns the signal that stopped it). With
    ``stop_on_load_error`` a model that fails to load stops the server; otherwise ``/readyz`` reports why."""

    def __init__(self, model: str | Path | Artifact, settings: ServeSettings = ServeSettings(), *,
                 log: Callable[[str], None] | None = None, stop_on_load_error: bool = False) -> None:
        settings.check()
        self.model, self.settings, self.stop_on_load_error = model, settings, stop_on_load_error
        self.state = ServeState(settings, log)
        self.app = create_app(self.state)
        self.sock = _listen(settings.host, settings.port, settings.backlog)
        config = uvicorn.Config(
            self.app, http=protocol_class(settings.header_timeout, settings.drain_idle), lifespan="off",
            loop="asyncio", backlog=settings.backlog, limit_concurrency=settings.max_connections,
            timeout_keep_alive=settings.keep_alive, timeout_graceful_shutdown=settings.drain_timeout,  # type: ignore[arg-type]
            access_log=False, log_config=None, proxy_headers=False, server_header=False)
        self.server = DrainingServer(config)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def scorer(self) -> Scorer | None:
        return self.state.scorer

    def load(self) -> None:
        """Load and warm up the model (``/readyz`` reports the outcome)."""
        s = self.state
        try:
            artifact = self.model if isinstance(self.model, Artifact) else load_artifact(self.model)
            scorer = Scorer(artifact, allow_unknown=self.settings.allow_unknown,
                            new_item_capacity=self.settings.new_item_cache)
            _warm_up(scorer)
            s.scorer = scorer
        except SemidError as e:
            s.load_error = " ".join(str(e).split())
            if self.stop_on_load_error:  # `semid serve`: a model that cannot load is one line and exit 2
                self.server.should_exit = True
        finally:
            s.loaded.set()

    def start(self) -> "ModelServer":
        threading.Thread(target=self.load, name="semid-serve-load", daemon=True).start()
        self._thread = threading.Thread(target=self._run, name="semid-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> int | None:
        """Serve until SIGTERM / SIGINT (then drain); the signal that stopped the server, or None."""
        threading.Thread(target=self.load, name="semid-serve-load", daemon=True).start()
        self._run()
        return self.server.stopped_by

    def shutdown(self) -> None:
        """Drain and stop (as on SIGTERM), then release the socket and the scoring threads."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self.close()

    def close(self) -> None:
        self.sock.close()
        self.app.state.pool.close()

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as e:
        hint = "choose another --port" if e.errno == errno.EADDRINUSE else "check --host and --port"
        reason = os.strerror(e.errno) if e.errno else str(e)  # create_server's strerror names the address again
        raise SemidError(f"cannot listen on {host}:{port} ({reason}); {hint}") from None


def _warm_up(scorer: Scorer) -> None:
    """One request through every path before /readyz says ready: the first forward allocates and picks kernels."""
    from semid.serve.requests import Requests

    item = scorer.artifact.items.item_id[:1]
    day = np.full(1, scorer.schema.default_day, np.int64)
    scorer.score(Requests(item, np.full(1, -1, np.int64), np.array([0, 1], np.int64), item, day,
                          np.full(1, -1, np.int64), None, np.zeros(1, bool)))
