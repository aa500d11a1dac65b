"""The three-way report (``model-diff compare3``): text, JSON, Markdown and HTML.

``render_threeway(result, format)`` renders a ``threeway.ThreeWay``: the merge-readiness
summary first (how many tensors merge exactly, how many conflict, how the conflicting
updates interfere), then the tensors changed on both sides with their update numbers, the
tensors changed on one side, and the breakdown per layer type and per block. Output is
deterministic for the same inputs. Names pass through ``printable`` (text), code spans
(Markdown) or autoescaping (HTML). This module renders only: it never reads checkpoints,
prints or writes files.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..terminal import printable
from ..threeway import GroupStats, ThreeWay, ThreeWayTensor
from .formatting import fmt_cos, fmt_float, fmt_int, fmt_params, fmt_pct, shorten
from .markdown import md_code, md_text
from .threeway_words import (
    both_changed,
    one_side,
    readiness_lines,
    side_change,
    verdict,
)

FORMATS = ("text", "json", "markdown", "html")
WIDTH = 80
SCHEMA_VERSION = "1.0"
#: Markdown tables stop after this many rows (the JSON report lists every tensor).
MARKDOWN_ROWS = 200


def render_threeway(result: ThreeWay, format: str = "text") -> str:
    """The three-way report in ``format`` ("text", "json", "markdown" or "html")."""
    if format == "text":
        return render_text(result)
    if format == "json":
        return render_json(result)
    if format == "markdown":
        return render_markdown(result)
    if format == "html":
        from .threeway_html import render_html

        return render_html(result)
    raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, not {format!r}")


def _input_line(side: str, info: dict[str, Any]) -> str:
    return (
        f"  {side:<7} {printable(str(info['path']))} ({info['format']}, "
        f"{fmt_int(info['num_tensors'])} tensors, {fmt_params(info['num_parameters'])} parameters)"
    )


def _group_cells(g: GroupStats) -> list[str]:
    c = g.counts
    return [
        fmt_int(g.total),
        fmt_int(c["unchanged"]),
        fmt_int(c["ours"]),
        fmt_int(c["theirs"]),
        fmt_int(c["both"]),
        fmt_int(c["conflict"]),
        fmt_cos(g.cosine),
        fmt_pct(g.sign_disagreement),
    ]


_GROUP_HEADER = [
    "tensors",
    "unchanged",
    "ours",
    "theirs",
    "both",
    "conflict",
    "cosine",
    "sign dis.",
]


def _update_cells(t: ThreeWayTensor) -> list[str]:
    s = t.stats
    if s is None:
        return ["n/a"] * 5
    return [
        fmt_cos(s.cosine),
        fmt_pct(s.sign_disagreement),
        fmt_float(s.ours_norm),
        fmt_float(s.theirs_norm),
        fmt_float(s.norm_ratio),
    ]


_UPDATE_HEADER = ["cosine", "sign dis.", "‖Δours‖", "‖Δtheirs‖", "ratio"]


# -- text -------------------------------------------------------------------------------


def _columns(header: list[str], rows: Sequence[list[str]], first: int, left: int = 1) -> list[str]:
    """Rows with the first column cut to ``first`` characters; the first ``left`` columns
    left-aligned, the others (numbers) right-aligned to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(1, len(header))]

    def line(r: list[str]) -> str:
        cells = " ".join(
            c.ljust(w) if i + 1 < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r[1:], widths, strict=True))
        )
        return f"  {shorten(r[0], first):<{first}} {cells}".rstrip()

    return [line(header), *(line(r) for r in rows)]


def render_text(result: ThreeWay) -> str:
    out = ["model-diff three-way report"]
    for side in ("base", "ours", "theirs"):
        out.append(_input_line(side, result.inputs[side]))
    out += ["", "Merge readiness"]
    for line in readiness_lines(result):
        out += textwrap.wrap(line, WIDTH, initial_indent="  ", subsequent_indent="    ")
    both = both_changed(result)
    if both:
        out += ["", f"Changed on both sides ({len(both)})"]
        rows = [
            [printable(t.change.name), t.change.conflict or "same", *_update_cells(t)] for t in both
        ]
        out += _columns(["tensor", "conflict", *_UPDATE_HEADER], rows, 40, left=2)
    single = one_side(result)
    if single:
        out += ["", f"Changed on one side ({len(single)})"]
        out += _columns(
            ["tensor", "changed by"],
            [[printable(t.change.name), side_change(t)] for t in single],
            56,
            left=2,
        )
    out += ["", "By layer type"]
    out += _columns(
        ["type", *_GROUP_HEADER],
        [[printable(g.label), *_group_cells(g)] for g in result.layer_types],
        12,
    )
    if result.blocks:
        out += ["", "By block"]
        out += _columns(
            ["block", *_GROUP_HEADER],
            [[printable(g.label), *_group_cells(g)] for g in result.blocks],
            24,
        )
    out += [
        "",
        "cosine and sign disagreement (share of the elements changed on both sides whose",
        "changes have opposite signs) compare Δours = ours - base with Δtheirs = theirs - base;",
        "per group they are pooled over the group's content conflicts.",
    ]
    return "\n".join(out) + "\n"


# -- JSON ---------------------------------------------------------------------------------


def report_dict(result: ThreeWay) -> dict[str, Any]:
    return {
        "schema": "model-diff.compare3",
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "model-diff", "version": __version__},
        **result.to_dict(),
        "verdict": verdict(result),
    }


def render_json(result: ThreeWay) -> str:
    """Indented JSON with one line per tensor record (fast to write, diffs tensor by tensor)."""
    doc = report_dict(result)
    tensors = doc.pop("tensors")
    head = json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False)
    body = ",\n".join(
        "    " + json.dumps(t, allow_nan=False, ensure_ascii=False, separators=(", ", ": "))
        for t in tensors
    )
    listing = f'"tensors": [\n{body}\n  ]' if tensors else '"tensors": []'
    return head[:-2] + ",\n  " + listing + "\n}\n"


# -- Markdown -----------------------------------------------------------------------------


def _md_table(header: list[str], rows: Sequence[list[str]], left: int = 1) -> list[str]:
    """A table with the first ``left`` columns left-aligned, the rest (numbers) right."""
    align = ":---|" * left + "---:|" * (len(header) - left)
    out = ["| " + " | ".join(header) + " |", "|" + align]
    out += ["| " + " | ".join(r) + " |" for r in rows[:MARKDOWN_ROWS]]
    if len(rows) > MARKDOWN_ROWS:
        out += ["", f"_{len(rows) - MARKDOWN_ROWS} more rows: see the JSON report._"]
    return out


def render_markdown(result: ThreeWay) -> str:
    out = ["## model-diff three-way report", ""]
    out += ["| | checkpoint | format | tensors | parameters |", "|:---|:---|:---|---:|---:|"]
    for side in ("base", "ours", "theirs"):
        i = result.inputs[side]
        out.append(
            f"| {side} | {md_code(str(i['path']))} | {md_text(str(i['format']))} | "
            f"{fmt_int(i['num_tensors'])} | {fmt_params(i['num_parameters'])} |"
        )
    out += ["", "### Merge readiness", ""]
    out += [f"- {md_text(line)}" for line in readiness_lines(result)]
    both = both_changed(result)
    if both:
        out += ["", f"### Changed on both sides ({len(both)})", ""]
        out += _md_table(
            ["tensor", "conflict", *_UPDATE_HEADER],
            [
                [md_code(t.change.name), t.change.conflict or "same", *_update_cells(t)]
                for t in both
            ],
            left=2,
        )
    single = one_side(result)
    if single:
        out += ["", f"### Changed on one side ({len(single)})", ""]
        out += _md_table(
            ["tensor", "changed by"],
            [[md_code(t.change.name), side_change(t)] for t in single],
            left=2,
        )
    out += ["", "### By layer type", ""]
    out += _md_table(
        ["type", *_GROUP_HEADER], [[md_text(g.label), *_group_cells(g)] for g in result.layer_types]
    )
    out += ["", "### By block", ""]
    out += _md_table(
        ["block", *_GROUP_HEADER], [[md_code(g.label), *_group_cells(g)] for g in result.blocks]
    )
    out += [
        "",
        "_cosine and sign disagreement compare Δours = ours − base with Δtheirs = theirs − base; "
        "per group they are pooled over the group's content conflicts._",
    ]
    return "\n".join(out) + "\n"
