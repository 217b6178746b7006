"""How numbers are printed: four significant digits everywhere a person reads them."""
from __future__ import annotations

import math
from typing import Any, Mapping


def sig(x: float | None, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits (``-`` for none or NaN): 0.7338, 12.35, 1.234e-05."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.{digits - 1}e}"


def estimate_text(e: Mapping[str, Any], pct: bool = False, decimals: int | None = None) -> str:
    """A defined estimate and its interval (when it has one): ``decimals`` fixed decimals, so a column of AUCs
    (4) or paired Δ% (2) lines up and 0.7000 does not print as 0.7; else :func:`sig`'s 4 significant digits.

    >>> estimate_text({"estimate": 1.4137, "ci_low": 0.2822, "ci_high": 3.172}, pct=True, decimals=2)
    '+1.41% [0.28, 3.17]'
    >>> estimate_text({"estimate": 0.7, "ci_low": 0.6994, "ci_high": 0.7612}, decimals=4)
    '0.7000 [0.6994, 0.7612]'
    """
    def num(x: float) -> str:
        return sig(x) if decimals is None else f"{x:.{decimals}f}"
    sign = "+" if pct and e["estimate"] > 0 else ""
    ci = f" [{num(e['ci_low'])}, {num(e['ci_high'])}]" if e.get("ci_low") is not None else ""
    return f"{sign}{num(e['estimate'])}{'%' if pct else ''}{ci}"
