"""Progress bars for long work (tqdm; silent when stderr is not a terminal unless SEMID_PROGRESS=1)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    """Whether progress bars show: SEMID_PROGRESS=1/0 decides, else whether stderr is a terminal."""
    flag = os.environ.get("SEMID_PROGRESS")
    if flag is not None:
        return flag == "1"
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled(), dynamic_ncols=True,
                leave=False)


def bar(desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    return tqdm(desc=desc, total=total, unit=unit, disable=not enabled(), dynamic_ncols=True, leave=False,
                unit_scale=True)
