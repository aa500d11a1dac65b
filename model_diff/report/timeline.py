"""The timeline report (``model-diff timeline``) as text, JSON and Markdown; HTML lives in
``timeline_html``. ``render_timeline(timeline, format)`` picks one.

Every format says the same: the checkpoints in order (and how they were ordered), the
events in words, per step the pattern, insight codes and biggest movers, and per block /
layer group and per layer type the relative change at each step with its trend. Numbers
are never in e-notation (``formatting.fmt_pct``); frozen, NaN/Inf and gap cells are
spelled out. Names from checkpoints go through ``terminal.printable`` (text), code spans
(Markdown) or autoescaping (HTML). This module renders only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..terminal import guard_json, guard_lines, printable
from ..timeline import Series, Step, Timeline
from .formatting import fmt_pct
from .markdown import md_code, md_text
from .timeline_words import RULE, cell_text, counts_text, order_text, pattern_text, row_title

FORMATS = ("text", "json", "markdown", "html")
#: Steps per table panel in the text report (wider tables wrap on a terminal).
TEXT_PANEL = 8


def render_timeline(timeline: Timeline, format: str = "text") -> str:
    """The timeline in ``format`` (text, json, markdown or html)."""
    if format == "text":
        return render_text(timeline)
    if format == "json":
        return render_json(timeline)
    if format == "markdown":
        return render_markdown(timeline)
    if format == "html":
        from .timeline_html import render_html  # jinja2 only for HTML

        return render_html(timeline)
    raise ValueError(f"unknown timeline format {format!r} (expected one of {FORMATS})")


def render_json(timeline: Timeline) -> str:
    return guard_json(json.dumps(timeline.to_dict(), indent=2, allow_nan=False) + "\n")


# -- text ------------------------------------------------------------------------------------


def render_text(timeline: Timeline) -> str:
    """Plain text: inputs, events, one paragraph per step, then the change tables."""
    t = timeline
    steps = t.steps
    lines = [
        f"Timeline: {len(t.checkpoints)} checkpoints, {len(steps)} steps ({order_text(t)})",
        "",
    ]
    for i, (label, detail) in enumerate(zip(t.checkpoints, t.details, strict=True)):
        lines.append(f"  {i:>3}  {printable(label)}" + (f"  {printable(detail)}" if detail else ""))
    lines += ["", "Events"]
    lines += [f"  - {printable(e.text)}" for e in t.events] or ["  (none)"]
    lines += ["", "Steps"]
    for s in steps:
        src = printable(s.source) if s.source is not None else "(nothing before)"
        lines.append(f"step {s.step}: {src} -> {printable(s.target)}")
        if s.gap is not None:
            lines.append(f"  gap: {printable(s.gap)}")
            continue
        span = f" (across {s.spans - 1} gap{'s' if s.spans > 2 else ''})" if s.spans > 1 else ""
        codes = ", ".join(i.code for i in s.insights) or "none"
        lines.append(
            f"  pattern {pattern_text(s.change_pattern)}{span}; {counts_text(s)}; whole model "
            f"{fmt_pct(s.aggregate_change)}; insights: {codes}"
        )
        if s.movers:
            movers = ", ".join(f"{printable(m.name)} {fmt_pct(m.change)}" for m in s.movers)
            lines.append(f"  biggest movers: {movers}")
    lines += ["", f"Relative change per block ({RULE})"]
    lines += _text_table(t.rows, steps, "block / group")
    lines += ["", "Relative change per layer type"]
    lines += _text_table(t.types, steps, "layer type")
    return guard_lines("\n".join(lines) + "\n")


def _text_table(rows: Sequence[Series], steps: Sequence[Step], first: str) -> list[str]:
    out: list[str] = []
    if not rows:
        return ["  (no rows: nothing was compared)"]
    for start in range(0, len(steps), TEXT_PANEL):
        part = range(start, min(start + TEXT_PANEL, len(steps)))
        last = part.stop == len(steps)
        header = [first] + [f"step {steps[i].step}" for i in part] + (["trend"] if last else [])
        table = [header] + [
            [printable(row_title(r))]
            + [cell_text(r, i, steps) for i in part]
            + ([r.trend] if last else [])
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        if start:
            out.append("")
        for row in table:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            if last:  # the trend word reads left-aligned
                cells[-1] = row[-1].ljust(widths[-1])
            out.append("  ".join(cells).rstrip())
    return out


# -- Markdown --------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A GitHub table; ``align`` has one letter per column: l(eft) or r(ight)."""
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render_markdown(timeline: Timeline) -> str:
    """GitHub-flavoured Markdown: events as a list, steps and change tables."""
    t = timeline
    steps = t.steps
    out = [
        f"## model-diff timeline: {len(t.checkpoints)} checkpoints, {len(steps)} steps",
        "",
        md_text(order_text(t).capitalize()) + ".",
        "",
        "### Events",
        "",
    ]
    out += [f"- {md_text(e.text)}" for e in t.events] or ["- none"]
    out += ["", "### Steps", ""]
    rows = []
    for s in steps:
        src = md_code(s.source) if s.source is not None else "-"
        if s.gap is not None:
            rows.append([str(s.step), f"{src} → {md_code(s.target)}", "gap", md_text(s.gap), ""])
            continue
        movers = ", ".join(f"{md_code(m.name)} {fmt_pct(m.change)}" for m in s.movers)
        rows.append(
            [
                str(s.step),
                f"{src} → {md_code(s.target)}",
                md_text(pattern_text(s.change_pattern)),
                ", ".join(md_code(i.code) for i in s.insights) or "none",
                movers or "-",
            ]
        )
    out += _md_table(
        ["step", "checkpoints", "pattern", "insights", "biggest movers"], rows, "rllll"
    )
    for title, series, first in (
        ("Relative change per block", t.rows, "block / group"),
        ("Relative change per layer type", t.types, "layer type"),
    ):
        out += ["", f"### {title}", ""]
        if not series:
            out.append("Nothing was compared.")
            continue
        header = [first] + [f"step {s.step}" for s in steps] + ["trend"]
        body = [
            [md_code(row_title(r))]
            + [md_text(cell_text(r, i, steps, frozen="frozen")) for i in range(len(steps))]
            + [r.trend]
            for r in series
        ]
        out += _md_table(header, body, "l" + "r" * len(steps) + "l")
    out += ["", md_text(RULE.capitalize()) + "."]
    return guard_lines("\n".join(out) + "\n")
