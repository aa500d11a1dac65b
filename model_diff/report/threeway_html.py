"""The three-way report as one self-contained HTML page (inline CSS and SVG, no script).

Rendered with the autoescaping jinja2 environment of the compare report (``html``); the only
markup that reaches the template unescaped is the SVG drawn here with ``charts``' helpers,
where every piece of text is escaped. Charts: who changed the tensors of each block, the
distribution of cos(Δours, Δtheirs) over the content conflicts, and the sign disagreement of
the conflicting updates per block. This module must not load anything from the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from .. import __version__
from ..terminal import printable
from ..threeway import NO_BLOCK, GroupStats, ThreeWay, ThreeWayTensor
from .charts import Svg, coord, count_axis, y_axis
from .formatting import fmt_cos, fmt_int, fmt_pct
from .html import environment
from .threeway_words import (
    INTERFERENCE_TEXT,
    KIND_TITLES,
    both_changed,
    one_side,
    readiness_lines,
    side_change,
    verdict,
)

#: Stacked series of the per-block chart: (kind, CSS class).
SERIES = (
    ("ours", "k-ours"),
    ("theirs", "k-theirs"),
    ("both", "k-both"),
    ("conflict", "k-conflict"),
)
WIDTH, HEIGHT = 760, 300


def _short_block(label: str) -> str:
    if label == NO_BLOCK:
        return "other"
    return label.rsplit(".", 1)[-1]


def block_changes_chart(
    blocks: Sequence[GroupStats], width: int = WIDTH, height: int = HEIGHT
) -> Markup | None:
    """Per block, stacked: tensors changed by ours only, theirs only, both alike, conflicting."""
    rows = [g for g in blocks if any(g.counts[k] for k, _ in SERIES)]
    if not rows:
        return None
    svg = Svg(width, height, "Changed tensors per block, by side", "blocks")
    top, bottom = 34.0, height - 40.0
    largest = max(sum(g.counts[k] for k, _ in SERIES) for g in rows)
    left, right, vmax = count_axis(svg, largest, width=width, top=top, bottom=bottom)
    slot = (right - left) / len(rows)
    stride = max(1, math.ceil(len(rows) / max(1, int((right - left) // 28))))
    for i, g in enumerate(rows):
        x = left + slot * i + slot * 0.15
        y = bottom
        for kind, cls in SERIES:
            n = g.counts[kind]
            if not n:
                continue
            h = (bottom - top) * n / vmax
            y -= h
            tip = f"{printable(g.label)}: {n} {KIND_TITLES[kind]}"
            svg.add(
                f'<rect x="{coord(x)}" y="{coord(y)}" width="{coord(slot * 0.7)}" '
                f'height="{coord(h)}" class="bar {cls}"><title>{escape(tip)}</title></rect>'
            )
        if i % stride == 0 or i == len(rows) - 1:
            svg.text(
                x + slot * 0.35, bottom + 16, _short_block(g.label), anchor="middle", cls="tick"
            )
    svg.text((left + right) / 2, height - 6, "block", anchor="middle", cls="axis")
    svg.text(12, top - 14, "tensors changed", cls="axis")
    x = right
    for kind, cls in reversed(SERIES):
        label = KIND_TITLES[kind]
        x -= 18 + 6.5 * len(label)
        svg.add(
            f'<rect x="{coord(x)}" y="{coord(top - 24)}" width="10" height="10" rx="2" '
            f'class="swatch {cls}"/>'
        )
        svg.text(x + 14, top - 15, label, cls="legend")
        x -= 8
    return svg.done()


#: Cosine bins of the conflict histogram: [lo, hi), the last one closed.
_COS_EDGES = tuple(-1.0 + 0.2 * i for i in range(11))


def cosine_chart(
    tensors: Sequence[ThreeWayTensor], width: int = WIDTH, height: int = HEIGHT
) -> Markup | None:
    """How many content conflicts fall in each band of cos(Δours, Δtheirs)."""
    values = [
        c
        for t in tensors
        if t.change.conflict == "content"
        and t.stats is not None
        and (c := t.stats.cosine) is not None
    ]
    if not values:
        return None
    counts = [0] * (len(_COS_EDGES) - 1)
    for c in values:
        counts[min(len(counts) - 1, int((c + 1.0) / 0.2))] += 1
    svg = Svg(width, height, "cos(Δours, Δtheirs) of conflicting tensors", "cos3")
    top, bottom = 30.0, height - 44.0
    left, right, vmax = count_axis(svg, max(counts), width=width, top=top, bottom=bottom)
    slot = (right - left) / len(counts)
    for i, n in enumerate(counts):
        lo, hi = _COS_EDGES[i], _COS_EDGES[i + 1]
        h = (bottom - top) * n / vmax
        x = left + slot * i + slot * 0.1
        cls = "bar hist" + (" warn" if hi <= 0 else "")
        label = f"{lo:+.1f}…{hi:+.1f}"
        svg.add(
            f'<rect x="{coord(x)}" y="{coord(bottom - h)}" width="{coord(slot * 0.8)}" '
            f'height="{coord(h)}" class="{cls}"><title>{escape(label)}: {n} tensors</title></rect>'
        )
        if n:
            svg.text(x + slot * 0.4, bottom - h - 5, fmt_int(n), anchor="middle", cls="val")
        svg.text(x + slot * 0.4, bottom + 16, f"{lo:+.1f}", anchor="middle", cls="tick")
    svg.text(
        (left + right) / 2,
        height - 8,
        "cosine between the two updates (band start)",
        anchor="middle",
        cls="axis",
    )
    svg.text(12, top - 12, "tensors", cls="axis")
    return svg.done()


def interference_chart(
    blocks: Sequence[GroupStats], width: int = WIDTH, height: int = HEIGHT
) -> Markup | None:
    """Per block with content conflicts: the pooled share of sign disagreement (bar) and the
    pooled cosine (in the tooltip and the label)."""
    rows = [g for g in blocks if g.sign_disagreement is not None]
    if not rows:
        return None
    svg = Svg(width, height, "Sign disagreement of conflicting updates per block", "interference")
    left, right, top, bottom = 56.0, width - 16.0, 30.0, height - 40.0
    y_axis(svg, left=left, top=top, bottom=bottom, right=right, vmax=1.0, step=0.25)
    slot = (right - left) / len(rows)
    for i, g in enumerate(rows):
        share = g.sign_disagreement or 0.0
        h = (bottom - top) * share
        x = left + slot * i + slot * 0.15
        cls = "bar hist" + (" warn" if (g.cosine or 0.0) < 0 else "")
        tip = (
            f"{printable(g.label)}: sign disagreement {fmt_pct(share)}, cosine {fmt_cos(g.cosine)}"
        )
        svg.add(
            f'<rect x="{coord(x)}" y="{coord(bottom - h)}" width="{coord(slot * 0.7)}" '
            f'height="{coord(h)}" class="{cls}"><title>{escape(tip)}</title></rect>'
        )
        svg.text(x + slot * 0.35, bottom + 16, _short_block(g.label), anchor="middle", cls="tick")
    svg.text((left + right) / 2, height - 6, "block", anchor="middle", cls="axis")
    svg.text(
        12, top - 12, "share of elements changed on both sides with opposite signs", cls="axis"
    )
    return svg.done()


def render_html(result: ThreeWay) -> str:
    charts: list[tuple[str, str, str, Markup | None, str]] = [
        (
            "blocks",
            "Who changed each block",
            "Tensors per block changed by ours only, theirs only, the same on both, "
            "or in conflict.",
            block_changes_chart(result.blocks),
            "No tensor changed.",
        ),
        (
            "cosine",
            "How the conflicting updates relate",
            "cos(Δours, Δtheirs) of each content conflict; bands below 0 (opposing updates) "
            "in orange.",
            cosine_chart(result.tensors),
            "No content conflict: nothing to compare.",
        ),
        (
            "interference",
            "Sign disagreement per block",
            "Share of the elements both sides changed whose changes have opposite signs, "
            "pooled over each block's content conflicts (orange: negative pooled cosine).",
            interference_chart(result.blocks),
            "No content conflict: nothing to compare.",
        ),
    ]
    template = environment().get_template("compare3.html.j2")
    return template.render(
        r=result,
        rd=result.readiness,
        counts=result.counts,
        conflict_counts=result.conflict_counts,
        readiness=readiness_lines(result),
        verdict=verdict(result),
        interference=INTERFERENCE_TEXT[result.readiness.interference],
        both=both_changed(result),
        single=[(t, side_change(t)) for t in one_side(result)],
        charts=charts,
        kind_titles=KIND_TITLES,
        version=__version__,
        width=WIDTH,
        height=HEIGHT,
    )
