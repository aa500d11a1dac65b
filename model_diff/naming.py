"""Natural ordering of tensor names (``layers.2`` before ``layers.10``)."""

from __future__ import annotations

import functools
import re

_DIGITS = re.compile(r"(\d+)")


#: Pure functions of a name are cached: a report asks about each name many times.
NAME_CACHE = 1 << 16


@functools.lru_cache(maxsize=NAME_CACHE)
def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs numerically and the rest as text; total and stable."""
    parts = _DIGITS.split(name)
    # (0, int) sorts numbers before (1, str) text at the same position, so keys never compare
    # an int with a str.
    return tuple((0, int(p)) if i % 2 else (1, p) for i, p in enumerate(parts) if p != "")


def natural_sorted(names: object) -> list[str]:
    return sorted(names, key=natural_key)  # type: ignore[call-overload]
