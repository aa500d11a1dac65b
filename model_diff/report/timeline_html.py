"""The timeline report as one self-contained HTML page (inline CSS and SVG, no script).

Two pictures, drawn here with ``charts``' SVG helpers and escaped piece by piece: a heatmap
of blocks (and layer groups outside blocks) x steps on a log colour scale, frozen cells
hatched, NaN/Inf cells red and marked, gap steps dashed, each cell's hover text (SVG
``<title>``) naming the value and the step's insights; and one line chart per layer type
(log scale shared by all, so the panels compare). Rendered with the package's autoescaping
jinja2 environment (``html.environment``). Numbers never in e-notation. This module must not
load anything from the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from .. import __version__
from ..terminal import printable
from ..timeline import Series, Step, Timeline
from .charts import Svg, axis_room, coord
from .formatting import fmt_pct, shorten
from .heat import NAN_FILL, LogScale, frozen_pattern, grid, heat_legend, ramp
from .html import environment
from .timeline_words import RULE, cell_text, counts_text, order_text, pattern_text, row_title

#: The id of the frozen cells' hatch pattern.
FROZEN_ID = "tl-frozen"
LAYER_TYPES = ("embedding", "attention", "mlp", "norm", "head", "other")


def _values(rows: Sequence[Series]) -> list[float]:
    return [c for r in rows for c in r.changes if c is not None and c > 0 and math.isfinite(c)]


def _cell_step_lines(s: Step) -> list[str]:
    """The step part of a cell's hover text: checkpoints, insight codes, and the titles of
    the warnings and critical ones (the column header has every title)."""
    head = f"step {s.step}: {printable(s.source or '-')} -> {printable(s.target)}"
    if s.gap is not None:
        return [head]
    lines = [head, "insights: " + (", ".join(i.code for i in s.insights) or "none")]
    lines += [f"{i.severity}: {printable(i.title)}" for i in s.insights if i.severity != "info"]
    return lines


def _step_lines(s: Step) -> list[str]:
    """The hover text of a step: its checkpoints, pattern and insights."""
    head = f"step {s.step}: {printable(s.source or '-')} -> {printable(s.target)}"
    if s.gap is not None:
        return [head, f"gap: {printable(s.gap)}"]
    lines = [head, f"pattern {pattern_text(s.change_pattern)}; {counts_text(s)}"]
    lines += [f"{i.severity} {i.code}: {printable(i.title)}" for i in s.insights]
    return lines


def heatmap(t: Timeline, width: int = 900) -> Markup | None:
    """Blocks x steps: colour = relative change (log scale); hatched = frozen; red with a
    mark = NaN/Inf; dashed column = gap (no comparison)."""
    rows, steps = t.rows, t.steps
    if not rows or not steps:
        return None
    values = _values(rows)
    scale = LogScale(values) if values else None
    labels = [printable(row_title(r)) for r in rows]
    g = grid(
        labels,
        len(steps),
        width,
        dense_above=40,
        max_label_w=300,
        cell_w_range=(14.0, 88.0),
        row_heights=(22.0, 12.0),
        top=40.0,
        bottom=70,
    )
    left, top, cell_w, row_h, chars = g.left, g.top, g.cell_w, g.row_h, g.chars
    legend_y, legend_w = g.legend_y, g.legend_w
    svg = Svg(g.width, g.height, "Relative change per block and step", "heatmap")
    svg.add(frozen_pattern(FROZEN_ID))
    step_tips = ["\n".join(_step_lines(s)) for s in steps]
    cell_tips = ["\n".join(_cell_step_lines(s)) for s in steps]
    jumps = {(label, e.step): e for e in t.events if e.kind == "jump" for label in e.rows}
    stride = max(1, math.ceil(len(steps) / max(1, int(cell_w * len(steps) // 28))))
    svg.text(left, 14, "step", cls="axis")
    for k, s in enumerate(steps):
        x = left + cell_w * k
        if k % stride == 0 or k == len(steps) - 1:
            svg.add(
                f'<text x="{coord(x + cell_w / 2)}" y="{coord(top - 8)}" text-anchor="middle" '
                f'class="tick{" gap" if s.gap else ""}" font-size="11">'
                f"<title>{escape(step_tips[k])}</title>{s.step}</text>"
            )
    for j, (r, label) in enumerate(zip(rows, labels, strict=True)):
        y = top + row_h * j
        svg.add(
            f'<text x="{coord(left - 8)}" y="{coord(y + row_h / 2 + 4)}" text-anchor="end" '
            f'class="lbl rowlbl{"" if row_h > 12 else " small"}"><title>{escape(label)}'
            f"</title>{escape(shorten(label, chars))}</text>"
        )
        for k, s in enumerate(steps):
            x = left + cell_w * k
            text = cell_text(r, k, steps, frozen="frozen (bit-identical)")
            tip = f"{label}, step {s.step}: {text}\n" + cell_tips[k]
            cls, fill, mark = _cell_style(r, k, s, scale)
            attrs = f'x="{coord(x)}" y="{coord(y)}" width="{coord(cell_w)}" height="{coord(row_h)}"'
            fill_attr = f' fill="{fill}"' if fill else ""
            svg.add(
                f'<rect {attrs} class="cell {cls}"{fill_attr} data-step="{s.step}" '
                f'data-row="{escape(r.label)}"><title>{escape(tip)}</title></rect>'
            )
            jump = jumps.get((r.label, s.step))
            if jump is not None:  # outlined, with an up-arrow: one of the step's jumps
                svg.add(
                    f'<rect x="{coord(x + 1.5)}" y="{coord(y + 1.5)}" width="{coord(cell_w - 3)}" '
                    f'height="{coord(row_h - 3)}" class="jump-mark" data-step="{s.step}" '
                    f'data-row="{escape(r.label)}"><title>{escape(jump.text)}</title></rect>'
                )
                if cell_w >= 24 and row_h >= 14:
                    svg.text(x + cell_w - 4, y + 11, "▲", anchor="end", cls="jump-glyph", size=9)
            if mark and cell_w >= 30 and row_h >= 14:
                svg.text(
                    x + cell_w / 2, y + row_h / 2 + 4, mark, anchor="middle", cls="mark", size=10
                )
            elif cls == "nan":
                svg.add(
                    f'<path d="M{coord(x + 3)},{coord(y + 3)} L{coord(x + cell_w - 3)},'
                    f"{coord(y + row_h - 3)} M{coord(x + cell_w - 3)},{coord(y + 3)} "
                    f'L{coord(x + 3)},{coord(y + row_h - 3)}" class="nan-mark"/>'
                )
    sx = heat_legend(svg, scale, left, legend_y, legend_w, FROZEN_ID, gap=True)
    y = legend_y + 42
    svg.add(f'<rect x="{coord(sx)}" y="{coord(y)}" width="14" height="10" class="jump-mark"/>')
    svg.text(sx + 18, y + 9, "jump (10x the previous step or more)", cls="legend", size=11)
    return svg.done()


def _cell_style(r: Series, k: int, s: Step, scale: LogScale | None) -> tuple[str, str, str]:
    """(CSS class, fill colour or "", text mark) of one heatmap cell."""
    if s.gap is not None:
        return "gap", "", ""
    if r.nonfinite[k] is not None:
        return "nan", NAN_FILL, str(r.nonfinite[k])
    if r.frozen[k]:
        return "frozen", f"url(#{FROZEN_ID})", "0"
    c = r.changes[k]
    if c is None or scale is None:
        return "none", "", ""
    if c <= 0:
        return "zero", ramp(0.0), ""
    return "value", ramp(scale(c)), ""


def type_charts(t: Timeline, width: int = 300, height: int = 170) -> list[tuple[str, Markup]]:
    """One line chart per layer type: its relative change per step on a log scale shared by
    every panel; NaN/Inf steps marked at the top, frozen steps on a "0" strip below the axis,
    gaps break the line."""
    steps = t.steps
    values = _values(t.types)
    if not t.types or not steps:
        return []
    scale = LogScale(values) if values else None
    out = []
    for r in t.types:
        out.append((r.label, _type_chart(r, steps, scale, width, height)))
    return out


def _type_chart(
    r: Series, steps: Sequence[Step], scale: LogScale | None, width: int, height: int
) -> Markup:
    label = printable(r.label)
    svg = Svg(width, height, f"Relative change per step: {label}", "typeline")
    ticks = scale.ticks() if scale is not None else []
    left = axis_room([fmt_pct(v) for v in ticks], least=62.0, size=10)
    right, top = width - 12.0, 14.0
    bottom = height - 46.0  # the plot; below it the "0" strip for frozen steps, then steps
    zero_y = bottom + 12
    cls = f"s-{r.label}" if r.label in LAYER_TYPES else "s-other"

    def x_of(k: int) -> float:
        if len(steps) == 1:
            return (left + right) / 2
        return left + 8 + (right - left - 16) * k / (len(steps) - 1)

    def y_of(v: float) -> float:
        assert scale is not None
        return bottom - (bottom - top) * scale(v)

    if scale is not None:
        for v in ticks:
            y = y_of(v)
            svg.add(
                f'<line x1="{coord(left)}" y1="{coord(y)}" x2="{coord(right)}" y2="{coord(y)}" '
                f'class="grid"/>'
            )
            svg.text(left - 6, y + 4, fmt_pct(v), anchor="end", cls="tick", size=10)
    svg.text(left - 6, zero_y + 4, "0", anchor="end", cls="tick", size=10)
    svg.add(
        f'<line x1="{coord(left)}" y1="{coord(bottom)}" x2="{coord(right)}" y2="{coord(bottom)}" '
        f'class="axis-line"/>'
    )
    stride = max(1, math.ceil(len(steps) / max(1, int((right - left) // 24))))
    for k, s in enumerate(steps):
        if k % stride == 0 or k == len(steps) - 1:
            svg.text(x_of(k), height - 20, str(s.step), anchor="middle", cls="tick", size=10)
    svg.text((left + right) / 2, height - 5, "step", anchor="middle", cls="axis", size=11)
    line: list[tuple[float, float]] = []
    marks: list[str] = []

    def flush() -> None:
        if len(line) > 1:
            pts = " ".join(f"{coord(x)},{coord(y)}" for x, y in line)
            svg.add(f'<polyline points="{pts}" class="line {cls}" fill="none"/>')
        line.clear()

    for k, s in enumerate(steps):
        x = x_of(k)
        tip = f"{label}, step {s.step}: {cell_text(r, k, steps, frozen='frozen (bit-identical)')}"
        c = r.changes[k]
        if s.gap is not None or r.nonfinite[k] is not None or c is None or c <= 0:
            flush()
        if s.gap is not None or (c is None and r.nonfinite[k] is None):
            continue
        if r.nonfinite[k] is not None:
            marks.append(
                f'<path d="M{coord(x - 4)},{coord(top)} L{coord(x + 4)},{coord(top + 8)} '
                f'M{coord(x + 4)},{coord(top)} L{coord(x - 4)},{coord(top + 8)}" '
                f'class="nan-mark red"><title>{escape(tip)}</title></path>'
            )
            continue
        if c is not None and c <= 0:
            marks.append(
                f'<circle cx="{coord(x)}" cy="{coord(zero_y)}" r="3" class="dot hollow">'
                f"<title>{escape(tip)}</title></circle>"
            )
            continue
        if c is not None and scale is not None:
            y = y_of(c)
            line.append((x, y))
            marks.append(
                f'<circle cx="{coord(x)}" cy="{coord(y)}" r="3" class="dot {cls}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    flush()
    for m in marks:
        svg.add(m)
    return svg.done()


def render_html(t: Timeline) -> str:
    steps = t.steps
    severity = {"critical": 0, "warning": 1, "info": 2}
    step_rows = [
        {
            "s": s,
            "codes": sorted(s.insights, key=lambda i: (severity.get(i.severity, 3), i.code)),
            "pattern": pattern_text(s.change_pattern),
            "counts": counts_text(s) if s.gap is None else "",
        }
        for s in steps
    ]

    def cells(rows: Sequence[Series]) -> list[tuple[Series, str, list[tuple[str, str]]]]:
        out = []
        for r in rows:
            row = []
            for k, s in enumerate(steps):
                cls = _cell_style(r, k, s, None)[0]
                row.append((cls, cell_text(r, k, steps, frozen="frozen")))
            out.append((r, row_title(r), row))
        return out

    template = environment().get_template("timeline.html.j2")
    return template.render(
        t=t,
        version=__version__,
        order=order_text(t),
        heatmap=heatmap(t),
        type_charts=type_charts(t),
        steps=step_rows,
        block_rows=cells(t.rows),
        type_rows=cells(t.types),
        rule=RULE,
        change=fmt_pct,
    )
