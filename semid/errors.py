"""User-facing errors: the CLI prints one line and exits 2 (``--debug`` shows the traceback)."""
from __future__ import annotations


class SemidError(Exception):
    """Something the user can fix. The message says what is wrong and how to fix it."""

    exit_code = 2


class DataError(SemidError):
    """A corpus or artifact file does not match the data contract."""

    def __init__(self, path: object, field: str | None, problem: str, fix: str | None = None) -> None:
        where = f"{path}" + (f": field '{field}'" if field else "")
        msg = f"{where}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)
        self.path = path
        self.field = field


class FingerprintMismatch(SemidError):
    """An artifact was built from different inputs than the ones it is used with."""
