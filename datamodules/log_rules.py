"""The rules ``semid data import`` applies to each value: labels, timestamps, periods, ids.

Each rule parses its flag up front (a bad flag is refused before any file is read) and converts one block of a
column at a time; a value it cannot convert is a ``DataError`` naming the file, the line (or row) and the column.

Example::

    >>> import pyarrow as pa
    >>> rule = LabelRule.parse("rating>=4", "--label")
    >>> rule.apply(pa.array(["5", "3", "4"]), lambda i: f"line {i + 2}").tolist()
    [1, 0, 1]
    >>> parse_period("week"), parse_period("3d")
    (7, 3)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semid.core.errors import DataError, SemidError

DAY = 86400
Where = Callable[[int], str]  # 0-based row of the block -> "FILE, line N"

_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal,
        "!=": np.not_equal}
_RULE = re.compile(r"^\s*([^<>=!:]+?)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_MAP = re.compile(r"^\s*([^<>=!:]+?)\s*:\s*([^/]*)/(.*)$")
_DEFAULT_POSITIVE = ("1", "true", "yes")
_DEFAULT_NEGATIVE = ("0", "false", "no")
_INT = r"^\s*-?[0-9]+\s*$"
_NUMBER = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


def parse_period(value: str) -> int:
    """``day`` -> 1, ``week`` -> 7, ``Nd`` -> N (days per corpus day)."""
    v = str(value).strip().lower()
    if v in ("day", "1d"):
        return 1
    if v == "week":
        return 7
    m = re.fullmatch(r"([0-9]+)d", v)
    if m and int(m.group(1)) >= 1:
        return int(m.group(1))
    raise SemidError(f"--period {value!r} is not a period (write day, week or Nd, e.g. 3d)")


@dataclass(frozen=True)
class LabelRule:
    """How a column becomes a 0/1 label: ``COL`` (values 1/0, true/false, yes/no), ``COL>=4`` (a comparison with a
    number; also >, <=, <, ==, !=) or ``COL:pos1,pos2/neg1,neg2`` (named values; any other value is refused)."""

    column: str
    op: str | None = None
    threshold: float = 0.0
    positive: tuple[str, ...] = _DEFAULT_POSITIVE
    negative: tuple[str, ...] = _DEFAULT_NEGATIVE
    text: str = ""

    @staticmethod
    def parse(spec: str, flag: str) -> "LabelRule":
        m = _RULE.match(spec)
        if m:
            try:
                t = float(m.group(3))
            except ValueError:
                t = math.nan
            if not math.isfinite(t):
                raise SemidError(f"{flag} {spec!r}: {m.group(3)!r} is not a finite number (e.g. {flag} 'rating>=4')")
            return LabelRule(m.group(1), m.group(2), t, text=spec)
        m = _MAP.match(spec)
        if m:
            pos = tuple(v.strip() for v in m.group(2).split(",") if v.strip())
            neg = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            if not pos or set(pos) & set(neg):
                raise SemidError(f"{flag} {spec!r}: name at least one positive value and no value on both sides "
                                 f"(e.g. {flag} 'action:click,buy/skip')")
            return LabelRule(m.group(1), None, 0.0, pos, neg, spec)
        if not spec.strip() or any(c in spec for c in "<>=!:/"):
            raise SemidError(f"{flag} {spec!r} is not a label rule (write COLUMN, COLUMN>=4 or "
                             "COLUMN:pos1,pos2/neg1,neg2)")
        return LabelRule(spec.strip(), text=spec)

    def describe(self) -> str:
        if self.op:
            return f"{self.column} {self.op} {self.threshold:g}"
        return f"{self.column} in {{{', '.join(self.positive)}}} (negatives: {{{', '.join(self.negative)}}})"

    def apply(self, col: pa.Array, where: Where) -> np.ndarray:
        """int8 0/1 per row; a value the rule does not map is a DataError at its line."""
        if self.op is not None:
            x = numbers(col, where, self.column)
            return _OPS[self.op](x, self.threshold).astype(np.int8)
        s = _strings(col)
        folded = pc.utf8_lower(s) if self.positive == _DEFAULT_POSITIVE else s
        pos = pc.is_in(folded, value_set=pa.array(self.positive, pa.string())).to_numpy(zero_copy_only=False)
        neg = pc.is_in(folded, value_set=pa.array(self.negative, pa.string())).to_numpy(zero_copy_only=False)
        bad = ~(pos | neg)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(where(i), self.column, f"label {s[i].as_py()!r} is outside the mapping (positives "
                            f"{', '.join(self.positive)}; negatives {', '.join(self.negative)})",
                            f"fix the value, or map it: --label '{self.column}:pos1,pos2/neg1,neg2'")
        return pos.astype(np.int8)


def _strings(col: pa.Array) -> pa.Array:
    s = col if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) else pc.cast(col, pa.string())
    return pc.utf8_trim_whitespace(s.fill_null(""))


def numbers(col: pa.Array, where: Where, name: str) -> np.ndarray:
    """float64 per row from a numeric or text column; text that is not a finite number is refused at its line."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        x = col.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(x)
        if col.null_count:
            bad |= col.is_null().to_numpy(zero_copy_only=False)
    else:
        s = _strings(col)
        ok = pc.match_substring_regex(s, _NUMBER).to_numpy(zero_copy_only=False)
        bad = ~ok
        x = np.zeros(len(s))
        if ok.all():
            x = pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False)
            bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(where(i), name, f"{col[i].as_py()!r} is not a number", "fix or delete that line")
    return x


def integers(col: pa.Array, where: Where, name: str, fix: str = "fix or delete that line") -> np.ndarray:
    """int64 per row from an integer column or digit strings; anything else is refused at its line."""
    if pa.types.is_integer(col.type) and not col.null_count:
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    s = _strings(col)
    ok = pc.match_substring_regex(s, _INT).to_numpy(zero_copy_only=False)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(where(i), name, f"{col[i].as_py()!r} is not an integer", fix)
    try:
        return pc.cast(s, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    except pa.ArrowInvalid:
        raise DataError(where(0), name, "integers beyond int64 in this block", fix) from None


def is_integer_column(col: pa.Array) -> bool:
    """Whether every value is an integer (digit strings included): ids are then used as they are."""
    if pa.types.is_integer(col.type):
        return not col.null_count
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return False
    return len(col) == 0 or bool(pc.all(pc.match_substring_regex(_strings(col), _INT)).as_py())


@dataclass(frozen=True)
class TimeRule:
    """How a column becomes Unix seconds: ``unix`` (seconds, integral floats accepted), ``unix_ms``, ``iso``
    (ISO 8601, e.g. 2019-11-15 08:55:22 or 2019-11-15T08:55:22) or a strptime pattern (``%m/%d/%Y %I:%M:%S %p``).
    Times without a zone are read as UTC."""

    column: str
    fmt: str = "unix"

    def seconds(self, col: pa.Array, where: Where) -> np.ndarray:
        """int64 Unix seconds per row; a time that does not parse is a DataError at its line."""
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            if col.null_count:
                return self._bad(col, col.is_null().to_numpy(zero_copy_only=False), where)
            return pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64()).to_numpy(zero_copy_only=False)
        if self.fmt in ("unix", "unix_ms"):
            x = np.floor(numbers_or_bad(col, self, where))
            return (x // 1000 if self.fmt == "unix_ms" else x).astype(np.int64)
        s = _strings(col)
        if self.fmt == "iso":
            try:
                t = pc.cast(s, pa.timestamp("s"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad = np.array([_iso_bad(v) for v in s.to_pylist()])
                return self._bad(col, bad, where)
        else:
            t = pc.strptime(s, format=self.fmt, unit="s", error_is_null=True)
            if t.null_count:
                return self._bad(col, t.is_null().to_numpy(zero_copy_only=False), where)
        return pc.cast(t, pa.int64()).to_numpy(zero_copy_only=False)

    def _bad(self, col: pa.Array, bad: np.ndarray, where: Where) -> np.ndarray:
        i = int(np.flatnonzero(bad)[0])
        raise DataError(where(i), self.column, f"{col[i].as_py()!r} is not a time in the format {self.fmt!r}",
                        "fix the line, or pass --time-format (unix, unix_ms, iso, or a pattern such as "
                        "'%m/%d/%Y %I:%M:%S %p')")


def numbers_or_bad(col: pa.Array, rule: TimeRule, where: Where) -> np.ndarray:
    try:
        return numbers(col, where, rule.column)
    except DataError:
        s = _strings(col)
        ok = pc.match_substring_regex(s, _NUMBER).to_numpy(zero_copy_only=False)
        return rule._bad(col, ~ok if (~ok).any() else np.ones(len(s), bool), where)


def _iso_bad(v: str) -> bool:
    try:
        pc.cast(pa.array([v]), pa.timestamp("s"))
        return False
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return True


def parse_date(value: str | None, flag: str) -> int | None:
    """``YYYY-MM-DD`` -> Unix seconds of that day's UTC midnight (None stays None)."""
    if value is None:
        return None
    try:
        d = datetime.strptime(str(value), "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise SemidError(f"{flag} {value!r} is not a date (write YYYY-MM-DD, e.g. 2019-11-09)") from None
    return int(d.timestamp())


def date_of(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%d")
