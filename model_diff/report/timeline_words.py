"""Wording shared by the timeline's text/Markdown (``report.timeline``) and HTML
(``report.timeline_html``) renderers: one cell, one row title, the order and step counts in
words, so every format says the same. Renders only."""

from __future__ import annotations

from collections.abc import Sequence

from ..timeline import Series, Step, Timeline
from .formatting import fmt_int, fmt_pct

__all__ = ["RULE", "cell_text", "counts_text", "order_text", "pattern_text", "row_title"]

RULE = "relative change = sqrt(sum ||new-old||^2 / sum ||old||^2) over the row's tensors"


def cell_text(row: Series, i: int, steps: Sequence[Step], *, frozen: str = "0 (frozen)") -> str:
    """One cell: gap, NaN/Inf, frozen, n/a or the relative change."""
    if steps[i].gap is not None:
        return "gap"
    if row.nonfinite[i] is not None:
        return str(row.nonfinite[i])
    if row.frozen[i]:
        return frozen
    c = row.changes[i]
    return "-" if c is None else fmt_pct(c)


def row_title(row: Series) -> str:
    if row.kind == "block":
        return row.label
    if row.kind == "outside_blocks":
        return f"{row.label} (outside blocks)"
    return row.label


def order_text(timeline: Timeline) -> str:
    order = timeline.order
    if order.startswith("metadata:"):
        return f"ordered by the {order.split(':', 1)[1]!r} in each checkpoint's metadata"
    return {
        "name": "ordered by name (natural order: step_900 before step_1000)",
        "git": "oldest commit first",
        "given": "in the order given",
    }.get(order, f"ordered by {order}")


def pattern_text(pattern: str | None) -> str:
    return "n/a" if pattern is None else pattern.replace("_", " ")


def counts_text(s: Step) -> str:
    parts = [f"{fmt_int(s.changed)} changed", f"{fmt_int(s.unchanged)} unchanged"]
    if s.added:
        parts.append(f"{fmt_int(s.added)} added")
    if s.removed:
        parts.append(f"{fmt_int(s.removed)} removed")
    return ", ".join(parts)
