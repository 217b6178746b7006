"""``semid serve``'s settings: where it listens and every bound it keeps (the CLI flags, one field each).

| setting | flag | default | why |
| --- | --- | --- | --- |
| ``backlog`` | ``--backlog`` | 2048 | connections the kernel queues before ``accept``: the standard-library server's 5 reset 20 clients |
| ``max_connections`` | ``--max-connections`` | 1024 | open connections (and requests in progress) beyond which uvicorn answers 503 |
| ``workers`` | ``--workers`` | 2 | threads that parse, score and encode (one torch forward at a time: the scorer holds a lock) |
| ``queue`` | ``--queue`` | 256 | requests waiting for a worker beyond which ``POST /score`` answers 503 at once |
| ``max_body_bytes`` | ``--max-body-mb`` | 64 MiB | larger bodies get 413 before they are read |
| ``header_timeout`` | ``--header-timeout`` | 10 s | a connection that has not sent a whole request head by then is closed (408) |
| ``body_timeout`` | ``--body-timeout`` | 30 s | a body that has not fully arrived by then gets 408 and the connection is closed |
| ``keep_alive`` | ``--keep-alive`` | 5 s | an idle keep-alive connection is closed after this |
| ``drain_timeout`` | ``--drain-timeout`` | 30 s | on SIGTERM, how long requests in progress may take to finish |
| ``new_item_cache`` | ``--new-item-cache`` | 100,000 | new items remembered (``new_items.py``: LRU) |

Example::

    >>> s = ServeSettings(port=0, workers=1)
    >>> s.check()
    >>> ServeSettings(workers=0).check()
    Traceback (most recent call last):
    ...
    semid.core.errors.SemidError: --workers must be >= 1, got 0
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from semid.core.errors import SemidError
from semid.serve.new_items import DEFAULT_CAPACITY

DEFAULT_MAX_BODY = 64 << 20  # bytes: 1024 requests with 256-d embeddings are ~3 MB of JSON


@dataclass(frozen=True)
class ServeSettings:
    """Listening address and limits of a ``ModelServer`` (see the module docstring's table)."""

    host: str = "127.0.0.1"
    port: int = 8000
    allow_unknown: bool = False
    backlog: int = 2048
    max_connections: int = 1024
    workers: int = 2
    queue: int = 256
    max_body_bytes: int = DEFAULT_MAX_BODY
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    drain_timeout: float = 30.0
    # on SIGTERM an idle keep-alive connection may still carry one request the client is sending right now;
    # closing it at once would reset that request, so it gets this long to arrive (and is answered, then closed)
    drain_idle: float = 0.5
    new_item_cache: int = DEFAULT_CAPACITY

    def check(self) -> None:
        """``SemidError`` naming the flag of the first setting out of range."""
        flags = {"max_body_bytes": "--max-body-mb"}
        for f in fields(self):
            v = getattr(self, f.name)
            flag = flags.get(f.name, "--" + f.name.replace("_", "-"))
            if f.name == "port" and not 0 <= v <= 65535:
                raise SemidError(f"--port must be in 0..65535 (0 picks a free one), got {v}")
            if f.name == "max_body_bytes" and v < 1:
                raise SemidError(f"{flag} must be positive, got {v / (1 << 20):g}")
            if f.name in ("backlog", "max_connections", "workers", "new_item_cache") and v < 1:
                raise SemidError(f"{flag} must be >= 1, got {v}")
            if f.name == "queue" and v < 0:
                raise SemidError(f"{flag} must be >= 0, got {v}")
            if f.name.endswith(("_timeout", "keep_alive", "drain_idle")) and not v > 0:
                raise SemidError(f"{flag} must be a positive number of seconds, got {v}")
