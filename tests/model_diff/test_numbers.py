"""The one number rule (model_diff.numbers): never e-notation in what people read."""

from __future__ import annotations

import json
import math
import re

import pytest

from model_diff.numbers import fmt_cos, fmt_float, fmt_fold, fmt_pct
from model_diff.report.html import positional_json, script_json

E_NOTATION = re.compile(r"\d[eE][+-]?\d")


@pytest.mark.parametrize(
    ("x", "shown"),
    [
        (0.0, "0"),
        (1.2e-5, "1.2×10⁻⁵"),
        (-3e-9, "-3×10⁻⁹"),
        (9.996e-5, "1×10⁻⁴"),
        (0.0012345, "0.001234"),
        (0.16470, "0.1647"),
        (12345.678, "12,350"),
        (4.56e7, "4.56×10⁷"),
        (1e300, "1×10³⁰⁰"),
        (math.nan, "n/a"),
        (None, "n/a"),
    ],
)
def test_magnitudes_fixed_in_range_powers_of_ten_outside(x: object, shown: str) -> None:
    """fmt_float: 4 significant digits fixed in [0.001, 1e6), d.dd×10ⁿ outside."""
    assert fmt_float(x) == shown


@pytest.mark.parametrize(
    ("x", "shown"),
    [(0.0054, "0.54%"), (0.03, "3%"), (9.99, "999%"), (1010.0, "1,010x"), (1e-9, "<0.0001%")],
)
def test_ratios_percent_then_fold(x: float, shown: str) -> None:
    """fmt_pct: percent with thousands separators, x-fold from 1000%."""
    assert fmt_pct(x) == shown


def test_no_helper_writes_an_exponent() -> None:
    """Every helper, every magnitude from 1e-300 to 1e300, either sign: no e-notation."""
    for e in range(-300, 301, 7):
        for m in (1.0, 2.5, 9.999):
            for v in (m * 10.0**e, -m * 10.0**e):
                text = fmt_float(v) + fmt_pct(v) + fmt_fold(v) + fmt_cos(v)
                assert not E_NOTATION.search(text), (v, text)


def test_positional_json_keeps_values_and_strings() -> None:
    """Embedded page data: numbers lose their exponent, not their value; strings that look
    like numbers (tensor names) are left alone; a float stays a float."""
    obj = {'w 1e-5 "q\\" 2E+3': [1.2e-05, -3.4e22, 1e300, 5e-324, 0.5, 12, "1e-07"]}
    text = positional_json(json.dumps(obj))
    assert json.loads(text) == obj
    assert [type(v) for v in json.loads(text)['w 1e-5 "q\\" 2E+3']] == [
        float,
        float,
        float,
        float,
        float,
        int,
        str,
    ]
    assert not E_NOTATION.search(text.replace('1e-5 \\"q\\\\\\" 2E+3', "").replace("1e-07", ""))
    assert '"1e-07"' in str(script_json(obj))
