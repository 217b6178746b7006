"""Imported by the local launcher's forkserver at its start (``semid.study.warm_start``), never by semid itself: its
import loads what ``semid rank fit`` and ``semid sids train`` import, directly or on first use, so that every
job forked from the forkserver starts with them loaded. Quietly: the forkserver's output is the experiment's.
"""
from __future__ import annotations

import os
import threading
import warnings

# The forkserver computes nothing: one thread for every pool, set before the libraries load (OpenBLAS would
# start its worker threads at import). Each forked job sets its task's count (semid.study.warm_start._child).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

MODULES = ("semid.cli", "semid.rankers.fit", "semid.rankers.cli", "semid.rqvae.sids_cli", "semid.rqvae.train",
           "lightning.pytorch.loggers.wandb", "wandb", "torchrec.distributed.model_parallel",
           "torchrec.distributed.planner", "torch.distributed.checkpoint", "threadpoolctl")
# native threads the imports may start that survive a fork by design: jemalloc's (pyarrow's allocator) has
# its own fork handlers, as Redis's forking with it relies on
FORK_SAFE_THREADS = {"jemalloc_bg_thd"}

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for _name in MODULES:
        __import__(_name)

# multiprocessing prepares each child by running the experiment's main module again; under `python -m semid.cli`
# runpy warns (on the experiment's stderr, before the job's log takes over) that semid.cli is already loaded
# here. It is, on purpose: this filter, inherited by every child, keeps that one warning out.
warnings.filterwarnings("ignore", message=r".*found in sys.modules after import of package.*", category=RuntimeWarning)


def _other_threads() -> list[str]:
    me = str(threading.get_native_id())
    return [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task") if t != me]


# a thread started by an import is missing from every forked child, with any lock it held never released
if threading.active_count() != 1 or set(_other_threads()) - FORK_SAFE_THREADS:
    raise RuntimeError(f"semid.study.warm_preload: an import started a thread ({_other_threads()}); forking this process "
                       "is unsafe (set launcher.warm_start: false)")
