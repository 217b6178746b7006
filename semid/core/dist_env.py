"""Lightning sets process-group variables (MASTER_ADDR, LOCAL_RANK, ...) for an in-process run and leaves them
set: a later multi-process run or a subprocess would inherit them and take itself for a rank of a launched job
(and hang or fail). ``kept_dist_env()`` restores them as it found them (a launcher's own values survive)."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK",
            "GROUP_RANK", "TORCHELASTIC_RUN_ID")


@contextlib.contextmanager
def kept_dist_env() -> Iterator[None]:
    before = {k: os.environ.get(k) for k in DIST_ENV}
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
