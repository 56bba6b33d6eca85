"""How numbers are written for people: the one percentage format of the command line, the progress bars and the report."""

from __future__ import annotations

import math


def percent(value: float | None, digits: int = 2, *, unit: str = "%", missing: str = "-") -> str:
    """An error fraction as a percentage ('12.34%'); `missing` when there is none or it is not finite."""
    if value is None or not math.isfinite(value):
        return missing
    return f"{100 * float(value):.{digits}f}{unit}"
