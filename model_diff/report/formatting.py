"""Number, shape and name formatting shared by every report format.

One place decides how a float, a percentage, a cosine or a count looks, so the text,
Markdown and HTML reports agree digit for digit: the number rule (never e-notation) lives in
``model_diff.numbers`` and is re-exported here for the renderers; counts, shapes and names
are formatted here. Names from a checkpoint are attacker-controlled:
``model_diff.terminal.printable`` makes control characters visible before any format sees
them. This module must not escape for a specific markup (each renderer does its
own escaping).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..numbers import NA, fmt_cos, fmt_float, fmt_fold, fmt_pct, is_number

__all__ = [
    "NA",
    "fmt_cos",
    "fmt_dtypes",
    "fmt_float",
    "fmt_fold",
    "fmt_int",
    "fmt_params",
    "fmt_pct",
    "fmt_shape",
    "is_number",
    "join_limited",
    "shorten",
]


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
