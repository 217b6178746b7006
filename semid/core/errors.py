"""User-facing errors: the CLI prints one line and exits 2 (``--debug`` shows the traceback)."""
from __future__ import annotations

import errno

# a write that failed for lack of room: no space, quota, file-size limit, read-only file system
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
# libraries that report such a failure without an errno (torch.save's PytorchStreamWriter, Arrow)
_NO_ROOM_TEXT = ("No space left on device", "File too large", "file write failed", "Disk quota exceeded",
                 "PytorchStreamWriter failed", "unexpected pos")


class SemidError(Exception):
    """Something the user can fix. The message says what is wrong and how to fix it; the CLI prints it as one
    line and exits 2.

    >>> import semid
    >>> try:
    ...     semid.SemanticIdCollection.from_sids(semid.HashConfig(rows=8), [1, 2], features=[])
    ... except semid.SemidError as e:
    ...     print(type(e).__name__)
    SemidError
    """

    exit_code = 2


class DataError(SemidError):
    """A corpus or artifact file does not match the data contract; the message names the file and the field.

    >>> from semid import DataError
    >>> str(DataError("items.parquet", "embedding", "dimension 0", "re-import the items"))[:40]
    "items.parquet: field 'embedding': dimens"
    """

    def __init__(self, path: object, field: str | None, problem: str, fix: str | None = None) -> None:
        where = f"{path}" + (f": field '{field}'" if field else "")
        msg = f"{where}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)
        self.path = path
        self.field = field


class FingerprintMismatch(SemidError):
    """An artifact was built from different inputs than the ones it is used with.

    >>> from semid import FingerprintMismatch, SemidError
    >>> issubclass(FingerprintMismatch, SemidError)
    True
    """


def out_of_room(exc: BaseException, target: object = None) -> SemidError | None:
    """The user-facing error for a write that failed for lack of room, or None if ``exc`` is something else.

    Artifacts are written to a temporary path and renamed, so such a failure leaves nothing half-written:
    the message says so, and how to fix it, in one line. ``target`` names the artifact being written when the
    library's error does not name a file (Arrow, torch.save).
    """
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _NO_ROOM:
            where = f"{e.filename or target}: " if (e.filename or target) else ""
            return SemidError(f"{where}cannot write ({e.strerror}); nothing half-written was kept (free disk "
                              "space, or choose another --out)")
        text = str(e)
        if isinstance(e, (OSError, RuntimeError)) and any(t in text for t in _NO_ROOM_TEXT):
            first = next((ln.strip() for ln in text.splitlines() if any(t in ln for t in _NO_ROOM_TEXT)), text)
            where = f"{target}: " if target else ""
            return SemidError(f"{where}cannot write ({first}); nothing half-written was kept (free disk space, or "
                              "choose another --out)")
        # torch.distributed.checkpoint wraps each rank's exception: {rank: (exception, stack)}
        failures = getattr(e, "failures", None)
        if isinstance(failures, dict):
            todo += [f[0] for f in failures.values() if isinstance(f, tuple) and isinstance(f[0], BaseException)]
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return None
