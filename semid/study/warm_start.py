"""Local jobs forked from a warm process: the local launcher's ``semid rank fit`` and ``semid sids train``
commands run in children of one process that imported torch, Lightning, TorchRec, W&B and semid once
(multiprocessing's forkserver with preloaded modules), instead of each starting a fresh interpreter.

Why (issue 19): a fit of the small main job took ~25 s, of which ~6.4 s were imports (Lightning alone
4.7 s: torchmetrics' text metrics pull in transformers, and torch._dynamo), and the main job starts 26 such
jobs on 2 cores. A forked child starts with those modules in memory (copy-on-write) and runs the same
command with the same arguments, environment, thread count and log file as the subprocess would.

What a child gets that a fresh process would: the environment the subprocess would have had (replaced
whole), its output in the task's log (file descriptors 1 and 2, so its own subprocesses write there too),
the thread limits the subprocess's ``OMP_NUM_THREADS`` would have set (torch, OpenMP, BLAS: threadpoolctl),
the ``atexit`` handlers of a normal exit (multiprocessing ends a child with ``os._exit``, which skips them:
W&B's service shutdown is one). It dies with the experiment: the forkserver exits when the experiment does,
and ``semid.cli._die_with_parent`` ties the child to the forkserver.

Only single-process commands are forked (``Task.forkable``): a multi-device fit re-launches its own script
for its other ranks, which needs a real command line. The forkserver is safe to fork because preloading only
imports, with one thread per pool: ``semid.study.warm_preload`` refuses to serve if an import started a thread other
than jemalloc's (which has fork handlers of its own). As with any forkserver child, multiprocessing first
imports the parent's main module (``semid``'s CLI, or pytest): a script that runs an experiment needs the
``if __name__ == "__main__":`` guard.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import threading
from multiprocessing.connection import wait as wait_ready
from multiprocessing.context import ForkServerContext
from typing import Sequence

from semid.cli import PARENT_PID_ENV, main
from semid.core.errors import SemidError

PRELOAD = "semid.study.warm_preload"  # imported by the forkserver at its start: its import preloads the jobs' modules
_lock = threading.Lock()


def available() -> bool:
    """Forking from a forkserver works here (POSIX; not on Windows)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def _context() -> ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, ForkServerContext)
    ctx.set_forkserver_preload([PRELOAD])
    return ctx


class ForkedJob:
    """A command running in a forked child, with the part of ``subprocess.Popen``'s interface the local
    launcher uses (``terminate``, ``kill``, ``wait``)."""

    def __init__(self, argv: Sequence[str], log: str, env: dict[str, str], threads: int) -> None:
        self.argv = list(argv)
        with _lock:  # one forkserver for the process, started by whichever job comes first
            self._proc = _context().Process(target=_child, args=(self.argv, log, env, threads), daemon=False,
                                            name=f"semid {' '.join(self.argv[:2])}")
            try:
                self._proc.start()
            except (EOFError, ConnectionError) as e:  # the forkserver died: its preload printed why
                raise SemidError(f"launcher: the warm process for local jobs did not start ({type(e).__name__}; "
                                 "its error is above) (set launcher.warm_start=false to start each job afresh)") from e
        self._status_lock = threading.Lock()

    def terminate(self) -> None:
        self._proc.terminate()  # SIGTERM: the command stops as on Ctrl-C (semid.core.interrupt)

    def kill(self) -> None:
        self._proc.kill()

    def wait(self, timeout: float | None = None) -> int:
        """The exit status as a subprocess would report it (a signal as 128 + its number, as a shell does).
        Several threads may wait at once (the launcher's and ``stop()``): the status is read from the forkserver
        once, under a lock; a second concurrent read would find its pipe empty and report 255."""
        if not wait_ready([self._proc.sentinel], timeout):
            raise subprocess.TimeoutExpired(self.argv, timeout or 0.0)
        with self._status_lock:
            self._proc.join()  # ended: returns at once
        code = self._proc.exitcode
        assert code is not None
        return 128 - code if code < 0 else code


def _child(argv: list[str], log: str, env: dict[str, str], threads: int) -> None:
    """In the forked child: become the subprocess ``semid <argv>`` would have been, run it, exit with its status."""
    os.environ.clear()
    os.environ.update(env)
    # semid.cli._die_with_parent ties the command to its parent process: here the forkserver, which exits with
    # the experiment (the experiment's own pid, which env names, is not this process's parent)
    os.environ[PARENT_PID_ENV] = str(os.getppid())
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.argv = ["semid", *argv]
    # imported here, in the child, where the forkserver preloaded them (free): importing this module (the
    # launchers do) stays free of torch
    from threadpoolctl import threadpool_limits
    import torch

    # a subprocess read OMP_NUM_THREADS when its libraries loaded; these were loaded in the forkserver
    threadpool_limits(threads)
    torch.set_num_threads(threads)
    try:
        rc = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # a normal exit's handlers (W&B's service shutdown, logging's flush)
    sys.exit(rc)
