"""Number, shape and name formatting shared by every report format.

One place decides how a float, a percentage, a cosine or a count looks, so the text,
Markdown and HTML reports agree digit for digit. Names from a checkpoint are attacker-
controlled: ``model_diff.terminal.printable`` makes control characters visible before any
format sees them. This module must not escape for a specific markup (each renderer does its
own escaping).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

NA = "n/a"


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt_float(x: object) -> str:
    """4 significant digits; scientific notation outside [1e-3, 1e5)."""
    if not is_number(x):
        return NA
    v = float(x)  # type: ignore[arg-type]
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:#.4g}".rstrip(".")
    return f"{v:.3e}"


def fmt_pct(x: object) -> str:
    """A ratio as a percentage with 3 significant digits (0.0123 -> "1.23%")."""
    if not is_number(x):
        return NA
    v = float(x) * 100  # type: ignore[arg-type]
    if v == 0:
        return "0%"
    if abs(v) < 1e-3:
        return f"{v:.2e}%"
    if abs(v) >= 1e5:
        return f"{v:.3e}%"
    return f"{v:#.3g}".rstrip(".") + "%"


def fmt_cos(x: object) -> str:
    """Cosine similarity with 6 decimals (fine-tunes live at 0.9999x: 4 digits would say 1)."""
    if not is_number(x):
        return NA
    return f"{float(x):.6f}"  # type: ignore[arg-type]


def fmt_int(x: object) -> str:
    """A count with thousands separators."""
    if isinstance(x, bool) or not isinstance(x, int):
        return NA
    return f"{x:,}"


def fmt_params(n: object) -> str:
    """A parameter count the way ML people say it: 7.24B, 110M, 12.3K."""
    if isinstance(n, bool) or not isinstance(n, int):
        return NA
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def fmt_shape(shape: Sequence[int] | None) -> str:
    if shape is None:
        return "-"
    return "[" + ", ".join(str(s) for s in shape) + "]"


def fmt_dtypes(dtypes: dict[str, int] | None) -> str:
    """Parameters per dtype, most first: {"float32": 7_000_000_000, "float16": 512} ->
    "float32 7B, float16 512"."""
    if not dtypes:
        return NA
    items = sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {fmt_params(v)}" for k, v in items)


def shorten(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, eliding the middle (names differ at both ends)."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 3 + 1) // 2
    tail = width - 3 - head
    return text[:head] + "..." + (text[-tail:] if tail else "")


def join_limited(items: Iterable[str], limit: int) -> str:
    """ "a, b, c (+4 more)"."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _significant(v: float, digits: int = 3) -> str:
    """``v`` rounded to ``digits`` significant digits, with thousands separators and without
    an exponent or trailing zeros (1400.3 -> "1,400", 0.0054321 -> "0.00543")."""
    if v == 0:
        return "0"
    places = digits - 1 - math.floor(math.log10(abs(v)))
    text = f"{round(v, places):,.{max(0, places)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


#: Below this a relative change reads "<0.0001%" (float32 rounding noise lives there).
CHANGE_FLOOR = 1e-6


def fmt_change(x: object) -> str:
    """A relative change the way people read it, never in e-notation: a percentage with
    thousands separators (0.0054 -> "0.54%", 7.49 -> "749%"), x-fold from 1000% on
    (14.2 -> "14.2x", 1400 -> "1,400x"); "<0.0001%" below ``CHANGE_FLOOR``."""
    if not is_number(x):
        return NA
    v = float(x)  # type: ignore[arg-type]
    if v == 0:
        return "0%"
    if abs(v) < CHANGE_FLOOR:
        return "<0.0001%"
    if abs(v) * 100 >= 999.5:
        return fmt_fold(v)
    return _significant(v * 100) + "%"


def fmt_fold(x: object) -> str:
    """A ratio as an x-fold without e-notation: 1400 -> "1,400x", 2.5 -> "2.5x"."""
    if not is_number(x):
        return NA
    return _significant(float(x)) + "x"  # type: ignore[arg-type]
