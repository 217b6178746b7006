"""The bounds a request meets before any work: its body's size and arrival time, and the scoring queue.

``BodyLimits`` (pure ASGI middleware) reads a request's whole body before the app sees it:

* a ``Content-Length`` over ``max_body_bytes`` is answered 413 at once, unread (a chunked body is counted as
  it arrives); a POST with neither ``Content-Length`` nor chunked encoding is answered 411;
* the body must have arrived ``body_timeout`` seconds after the request head: a client that sends fewer bytes
  than its ``Content-Length`` gets 408 and its connection is closed, so it holds no worker (uvicorn has no
  body timeout of its own, and no worker is taken before the body is complete).

``ScoringPool`` runs the CPU-bound scoring on ``workers`` threads (torch releases the GIL in the forward, so a
second worker parses the next body meanwhile) and admits at most ``queue`` more requests waiting for one;
beyond that ``POST /score`` answers 503 with ``Retry-After`` instead of queueing without bound.

Example::

    >>> import asyncio
    >>> pool = ScoringPool(workers=1, queue=0)
    >>> asyncio.run(pool.run(sum, [1, 2, 3]))
    6
    >>> pool.close()
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


class AtCapacity(Exception):
    """Every worker is busy and the queue is full."""


class ScoringPool:
    """``workers`` scoring threads and a bounded queue in front of them (see the module docstring)."""

    def __init__(self, workers: int, queue: int, on_depth: Callable[[int], None] | None = None) -> None:
        self.workers, self.queue = workers, queue
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="semid-score")
        self.pending = 0  # changed on the event loop's thread only
        self._on_depth = on_depth

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a worker thread; ``AtCapacity`` at once if ``workers + queue`` are pending."""
        if self.pending >= self.workers + self.queue:
            raise AtCapacity
        self._depth(+1)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._depth(-1)

    def _depth(self, d: int) -> None:
        self.pending += d
        if self._on_depth is not None:
            self._on_depth(self.pending)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def json_error(status: int, error: str, *, close: bool = False,
               headers: dict[str, str] | None = None) -> tuple[Message, Message]:
    """The two ASGI messages of a one-line JSON error answer."""
    body = (json.dumps({"error": error}) + "\n").encode()
    h = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    h += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:  # uvicorn closes the connection after an answer that says so
        h.append((b"connection", b"close"))
    return ({"type": "http.response.start", "status": status, "headers": h},
            {"type": "http.response.body", "body": body})


class BodyLimits:
    """Reads the body of every request that has one, within ``max_body_bytes`` and ``body_timeout`` seconds."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout: float) -> None:
        self.app, self.max_body_bytes, self.body_timeout = app, max_body_bytes, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is None and not chunked:  # no body
            if scope["method"] == "POST":
                return await _answer(send, 411, "a Content-Length header is required")
            await self.app(scope, receive, send)
            return
        if length is not None:
            # uvicorn's parser (llhttp) has already refused a Content-Length that is not a byte count
            n = int(length)
            if n > self.max_body_bytes:
                return await _answer(send, 413, f"the body has {n:,} bytes; at most {self.max_body_bytes:,} (send "
                                                "smaller batches, or raise --max-body-mb)", close=True)
        parts: list[bytes] = []
        got = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    parts.append(message.get("body", b""))
                    got += len(parts[-1])
                    if got > self.max_body_bytes:
                        return await _answer(send, 413, f"the body has more than {self.max_body_bytes:,} bytes "
                                                        "(send smaller batches, or raise --max-body-mb)", close=True)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            expected = f" of {int(length):,}" if length is not None else ""
            return await _answer(send, 408, f"the body did not arrive within {self.body_timeout:g} s ({got:,}"
                                            f"{expected} bytes received; send the whole body at once, or raise "
                                            "--body-timeout)", close=True)
        body = b"".join(parts)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: http.disconnect when the client leaves

        await self.app(scope, replay, send)


async def _answer(send: Send, status: int, error: str, *, close: bool = False) -> None:
    for message in json_error(status, error, close=close):
        await send(message)
