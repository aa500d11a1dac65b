"""Natural name order: digit runs by value, the rest as text."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from model_diff.naming import natural_key, natural_sorted


def _pairs_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """The definition, spelled as a tuple of (tag, value) runs."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if i % 2 else (1, p) for i, p in enumerate(parts) if p)


def test_digit_runs_sort_by_value_and_before_text() -> None:
    names = ["layers.10.w", "layers.2.w", "layers.2", "layers.x", "", "10", "9", "a1b", "a01b"]
    assert natural_sorted(names) == [
        "",
        "9",
        "10",
        "a1b",
        "a01b",
        "layers.2",
        "layers.2.w",
        "layers.10.w",
        "layers.x",
    ]


@settings(deadline=None)
@given(st.lists(st.text(alphabet="ab._0129", max_size=12), max_size=40))
def test_the_flat_key_orders_as_the_runs_do(names: list[str]) -> None:
    """The flat key gives the order of the (tag, value) runs it spells, on any names."""
    assert sorted(names, key=natural_key) == sorted(names, key=_pairs_key)
    for name in names:
        assert natural_key(name) == tuple(x for run in _pairs_key(name) for x in run)
