"""The ``semid`` command. Each room registers its own sub-commands; this file only dispatches.

User errors (``SemidError``, and a write that failed for lack of disk space) print one line and exit 2;
``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Sequence

# Read by libgomp when torch loads, so it must be set before any command module imports torch: idle
# OpenMP threads sleep instead of spinning. On a shared or oversubscribed machine a spinning barrier waits
# for a descheduled sibling thread on every parallel op (rank fit, 2 threads, load 4: 3.2k -> 70k samples/s;
# neutral with 1 thread). Spawned ranks and experiment fits inherit it; export OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from semid.core import interrupt
from semid.core.artifacts import check_writable
from semid.core.errors import SemidError, out_of_room

# Modules exposing ``register(subparsers)``; each adds one command group.
COMMAND_MODULES: tuple[str, ...] = (
    "semid.datamodules.cli",
    "semid.rqvae.sids_cli",
    "semid.embeddings.cli",
    "semid.rankers.cli",
    "semid.study.experiment_cli",
    "semid.bench.cli",
    "semid.serve.cli",
    "semid.site.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semid", description="Semantic IDs for ranking: corpora, RQ-VAE, "
                                     "sub-piece tokens, rankers, experiments and benchmarks.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# Set by a parent semid process (``semid experiment``) on the jobs it starts.
PARENT_PID_ENV = "SEMID_PARENT_PID"


def _die_with_parent() -> None:
    """A job started by ``semid experiment`` dies with it: a parent killed with -9 must not leave orphans
    writing into run directories that the rerun is about to resume (Linux; elsewhere a no-op)."""
    parent = os.environ.pop(PARENT_PID_ENV, None)  # popped: this job's own children are not its jobs
    if parent is None or not sys.platform.startswith("linux"):
        return
    # deferred: only a job started by `semid experiment` gets here, and ctypes costs every other command ~2 ms
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _die_with_parent()
    debug = "--debug" in argv or os.environ.get("SEMID_DEBUG") == "1"
    if debug:
        os.environ["SEMID_DEBUG"] = "1"  # child processes (ranks, experiment fits) show everything too
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        # output paths are checked before any work: a parent that is a file or unwritable is one line
        for name in ("out", "json"):
            if isinstance(getattr(args, name, None), Path):
                check_writable(getattr(args, name), f"--{name}")
        interrupt.install()
        rc = args.func(args)
        return int(rc or 0)
    except SemidError as e:
        if debug:
            raise
        print(f"semid: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        line, code = interrupt.message()
        print(line, file=sys.stderr)
        return code
    except BaseException as e:  # torch's CheckpointException derives from BaseException
        if isinstance(e, SystemExit) and interrupt.interrupted() is not None:  # Lightning's exit(1) after a signal
            line, code = interrupt.message()
            print(line, file=sys.stderr)
            return code
        err = None if isinstance(e, SystemExit) else out_of_room(e)
        if err is None and isinstance(e, (NotADirectoryError, PermissionError, IsADirectoryError)):
            err = SemidError(f"{e.filename}: cannot write ({e.strerror}) (choose another --out)")
        if err is None or debug:
            raise
        print(f"semid: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
