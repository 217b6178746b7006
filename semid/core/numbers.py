"""How numbers are printed: four significant digits everywhere a person reads them."""
from __future__ import annotations

import math


def sig(x: float | None, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits (``-`` for none or NaN): 0.7338, 12.35, 1.234e-05."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.{digits - 1}e}"
