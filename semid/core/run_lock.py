"""One semid process at a time in a run or experiment directory.

Two processes writing the same run directory (a rerun started while the first still runs, or a fit orphaned
by a stopped experiment) interleave checkpoints and fail far from the cause (a missing ``.tmp-dcp`` shard).
``exclusive(dir)`` holds an ``flock`` on ``<dir>/.semid.lock`` for the block: the kernel releases it when the
holder exits however it exits (``kill -9`` included), so a stale lock never blocks a rerun. A second process
gets one line naming the directory and the holder's pid, before it does any work.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from semid.core.errors import SemidError

LOCK_NAME = ".semid.lock"
# set in the processes of a multi-process run but its first: they share the first one's directory and lock
_RANK_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def _a_later_rank() -> bool:
    return any(os.environ.get(k, "0") not in ("", "0") for k in _RANK_ENV)


@contextlib.contextmanager
def exclusive(directory: Path, what: str) -> Iterator[None]:
    """Hold ``directory``'s lock (creating the directory) while the block runs; ``what`` names the job in the
    refusal (e.g. "semid rank fit"). A no-op where ``flock`` does not exist and in a run's later ranks."""
    if _a_later_rank() or not sys.platform.startswith(("linux", "darwin")):
        yield
        return
    import fcntl

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise SemidError(f"{directory}: is a file, not a directory (choose another --out)")
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise SemidError(f"{directory}: another {what} (pid {holder}) is writing this directory; wait for it "
                             "to end or stop it, then rerun (or choose another --out)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
