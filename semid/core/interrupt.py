"""Ctrl-C and SIGTERM: one line saying where the run stopped and that rerunning resumes, exit 130 / 143.

Long stages say where they are (``at("rank fit: training day 3")``); the CLI turns SIGTERM into the same
KeyboardInterrupt as Ctrl-C, so Lightning's graceful shutdown runs, and reports the position. Lightning
ends its own interrupt handling with ``exit(1)``; ``interrupted()`` tells the CLI that exit came from a
signal.
"""
from __future__ import annotations

import signal
from types import FrameType

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
