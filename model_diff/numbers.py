"""How every number reads in text, Markdown and HTML: the one rule, stated once.

The rule (never e-notation: no report a person reads shows ``1.2e-05`` or ``1.50e+03%``):

- **Ratios** (relative change, share of elements, relative error): a percentage with 3
  significant digits and thousands separators (0.0054 -> "0.54%", 7.49 -> "749%"); from
  1000% on an x-fold (14.2 -> "14.2x", 1010 -> "1,010x"); below ``PCT_FLOOR`` "<0.0001%".
- **Folds** (norm ratios, "late vs early" ratios): 3 significant digits and an ``x``
  (2.5 -> "2.5x", 48100 -> "48,100x").
- **Magnitudes** (L2 distance, max abs diff, norms, thresholds): 4 significant digits,
  fixed-point with thousands separators in [0.001, 1,000,000) ("0.01234", "12,340"); outside
  that range a power of ten with a superscript exponent ("1.23×10⁻⁵", "4.56×10⁷").
- **Cosines**: 6 decimals (fine-tunes live at 0.9999x).

JSON keeps raw floats: these functions are for people only. This module imports nothing of
model-diff, so engine modules (insights, patterns) and every renderer use the same helpers.
"""

from __future__ import annotations

import math

__all__ = [
    "NA",
    "PCT_FLOOR",
    "finite_or_none",
    "fmt_cos",
    "fmt_float",
    "fmt_fold",
    "fmt_pct",
    "is_number",
    "significant",
]

NA = "n/a"
#: Below this a ratio reads "<0.0001%" (float32 rounding noise lives there).
PCT_FLOOR = 1e-6
#: Magnitudes in [FIXED_LOW, FIXED_HIGH) are written fixed-point, others as d.dd×10ⁿ.
FIXED_LOW, FIXED_HIGH = 1e-3, 1e6
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def finite_or_none(x: float | None) -> float | None:
    """``x`` when it is a finite number, else None (what JSON and the reports show as n/a)."""
    return x if x is not None and math.isfinite(x) else None


def significant(v: float, digits: int = 3) -> str:
    """``v`` rounded to ``digits`` significant digits, with thousands separators and without
    an exponent or trailing zeros (1400.3 -> "1,400", 0.0054321 -> "0.00543")."""
    if v == 0:
        return "0"
    places = digits - 1 - math.floor(math.log10(abs(v)))
    text = f"{round(v, places):,.{max(0, places)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_pct(x: object) -> str:
    """A ratio as a percentage, x-fold from 1000% on; "<0.0001%" below ``PCT_FLOOR``."""
    if not is_number(x):
        return NA
    v = float(x)  # type: ignore[arg-type]
    if v == 0:
        return "0%"
    if abs(v) < PCT_FLOOR:
        return "<0.0001%"
    if abs(v) * 100 >= 999.5:
        return fmt_fold(v)
    return significant(v * 100) + "%"


def fmt_fold(x: object) -> str:
    """A ratio as an x-fold: 1400 -> "1,400x", 2.5 -> "2.5x"; past 10¹² as a power of ten."""
    if not is_number(x):
        return NA
    v = float(x)  # type: ignore[arg-type]
    if v != 0 and not 1e-6 <= abs(v) < 1e12:
        return fmt_float(v) + "x"
    return significant(v) + "x"


def fmt_float(x: object) -> str:
    """A magnitude with 4 significant digits: fixed-point in [0.001, 1,000,000), else
    ``1.23×10⁻⁵``."""
    if not is_number(x):
        return NA
    v = float(x)  # type: ignore[arg-type]
    if v == 0:
        return "0"
    if FIXED_LOW <= abs(v) < FIXED_HIGH:
        return significant(v, 4)
    exp = math.floor(math.log10(abs(v)))
    mant = round(v / 10.0**exp, 2)
    if abs(mant) >= 10:  # 9.996 rounds up to the next decade
        mant, exp = mant / 10, exp + 1
    return f"{mant:.2f}".rstrip("0").rstrip(".") + "×10" + str(exp).translate(_SUPERSCRIPT)


def fmt_cos(x: object) -> str:
    """Cosine similarity with 6 decimals (fine-tunes live at 0.9999x: 4 digits would say 1)."""
    if not is_number(x):
        return NA
    return f"{float(x):.6f}"  # type: ignore[arg-type]
