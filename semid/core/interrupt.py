"""Ctrl-C and SIGTERM: one line saying where the run stopped and that rerunning resumes, exit 130 / 143.

Long stages say where they are (``at("rank fit: training day 3")``); the CLI turns SIGTERM into the same
KeyboardInterrupt as Ctrl-C, so Lightning's graceful shutdown runs, and reports the position. Lightning
ends its own interrupt handling with ``exit(1)``; ``interrupted()`` tells the CLI that exit came from a
signal.

A signal that arrives while a checkpoint is being written is held until the write ends (``deferred()``): the
checkpoint on disk is then the new one, whole, and the run stops with the same line. Raised inside the write,
it surfaced as torch's CheckpointException (DCP wraps every rank's exception) and a long traceback.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_state: dict[str, object] = {"where": "", "signal": None}


def at(where: str) -> None:
    """Record what the process is doing now (the interrupt message names it)."""
    _state["where"] = where


def _raise(signum: int, frame: FrameType | None) -> None:
    _state["signal"] = signum
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT and SIGTERM both raise KeyboardInterrupt (main thread only, where Python delivers signals)."""
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


def interrupted() -> int | None:
    """The signal that interrupted the run, or None."""
    sig = _state["signal"]
    return int(sig) if sig is not None else None  # type: ignore[call-overload]


def message() -> tuple[str, int]:
    """(one line, exit code) for an interrupted run."""
    sig = interrupted() or signal.SIGINT
    name = signal.Signals(sig).name
    where = f" during {_state['where']}" if _state["where"] else ""
    return (f"semid: stopped by {name}{where}; finished stages and checkpoints are kept, rerun the same command "
            "to resume", EXIT_CODES.get(sig, 130))


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then call the handler of the first one held, as it would have
    been called (``install()``'s, Python's Ctrl-C one, or Lightning's wrapper of them: ``KeyboardInterrupt``). For
    writes that must not stop halfway (a checkpoint save: every rank finishes the collective write, then all stop).
    Signals left to their default action (SIGTERM outside the CLI) still end the process at once: the writes are
    atomic renames anyway.

    >>> with deferred():
    ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be changed (and signals only arrive) in the main thread
        return
    held: list[int] = []
    previous = {s: signal.getsignal(s) for s in EXIT_CODES}
    # any Python handler: Lightning's trainer wraps install()'s SIGTERM handler in its own (_HandlersCompose)
    ours = {s for s, h in previous.items() if callable(h)}

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    for s in ours:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for s in ours:
            signal.signal(s, previous[s])
    if held:
        handler = previous[held[0]]
        if callable(handler):
            handler(held[0], None)
