"""uvicorn, with the two bounds it lacks and a drain that resets nobody.

uvicorn (0.55, pinned in ``constraints.txt``) times out idle keep-alive connections but not a request head that
never completes, and on shutdown closes idle keep-alive connections at once: a client that was just sending its
next request on one sees a reset. ``protocol_class`` subclasses its httptools protocol to

* close a connection whose request head has not fully arrived ``header_timeout`` seconds after its first byte
  (or after the connection opened), answering 408;
* on shutdown, answer the request an idle keep-alive connection may still carry (``drain_idle`` seconds), with
  ``Connection: close``, then close it; a connection in the middle of a request finishes it, then closes.

``DrainingServer`` records the signals it stopped on instead of raising them again after the drain (uvicorn
re-raises them so that a default handler kills the process; ``semid serve`` turns them into its exit code).

Example::

    >>> cls = protocol_class(header_timeout=10.0, drain_idle=0.5)
    >>> cls.__name__
    'SemidHttpProtocol'
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from typing import Generator

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import HANDLED_SIGNALS, Server

_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s")


def protocol_class(header_timeout: float, drain_idle: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a request-head timeout and a drain of idle connections."""

    class SemidHttpProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _in_head = False  # bytes of a request head arrived, the head is not complete yet
        _draining = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # uvicorn writes an answer's head and body separately; with Nagle's algorithm the body waits for the
            # client's delayed ACK (GET /healthz p50: 47 ms -> 1 ms). asyncio sets TCP_NODELAY only on sockets
            # whose proto is IPPROTO_TCP, which a socket from socket.create_server (proto 0) is not
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:  # these bytes start a new request
                self._in_head = True
                if self._head_timer is None:
                    self._arm_head_timer()
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().on_headers_complete()
            if self._draining and self.cycle is not None:
                self.cycle.keep_alive = False  # answered with Connection: close, then closed

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            idle = self.cycle is None or self.cycle.response_complete
            if idle and not self.transport.is_closing():
                if self._in_head:
                    body = (b'{"error": "the request head did not arrive within %g s (raise --header-timeout)"}\n'
                            % header_timeout)
                    self.transport.write(_TIMEOUT_408 % (len(body), body))
                self.transport.close()

        def shutdown(self) -> None:
            if self.cycle is None or self.cycle.response_complete:
                # idle between requests: the client may be sending its next request right now
                self._draining = True
                self.loop.call_later(drain_idle, self._close_if_idle)
            else:
                self.cycle.keep_alive = False

        def _close_if_idle(self) -> None:
            idle = (self.cycle is None or self.cycle.response_complete) and not self._in_head
            if idle and not self.transport.is_closing():
                self.transport.close()
            elif not self.transport.is_closing() and self._in_head:
                self.loop.call_later(drain_idle, self._close_if_idle)  # the head timer ends a stalled one

    return SemidHttpProtocol


class DrainingServer(Server):
    """uvicorn's ``Server``, stopping on SIGINT / SIGTERM without raising them again (``stopped_by``)."""

    stopped_by: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
        if self._captured_signals:
            self.stopped_by = self._captured_signals[0]
