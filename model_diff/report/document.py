"""Several reports in one document: a revision diff or a ``--dir-diff`` over many files.

``render_document(entries, format, title=, meta=)`` puts per-file reports (already rendered
in that format by ``create_diff_report``) together: a title, one line per file saying what
happened to it, then each report. Text, Markdown, JSON and HTML, with the package's own
escaping (``printable``, ``markdown.md_text``, HTML autoescaping): the git drivers render no
report of their own. Deterministic; strings only, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import escape

from ..terminal import guard_json, guard_lines, printable
from .markdown import md_text

__all__ = ["Entry", "render_document"]


@dataclass(frozen=True)
class Entry:
    """One file of the document: its label, one status line, and its report (None when the
    file was added, removed, skipped or unreadable). ``record`` is the file's JSON object
    (paths, status, sides); the JSON document adds its parsed ``report``."""

    label: str
    status: str
    report: str | None = None
    record: Mapping[str, Any] = field(default_factory=dict)


def render_document(
    entries: Sequence[Entry],
    format: str,
    *,
    title: str,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """One document in ``format`` ("text", "json", "markdown" or "html") for ``entries``."""
    if format == "json":
        return guard_json(_json(entries, title, meta or {}))
    if format == "html":
        return _html(entries, title)
    if format == "markdown":
        return guard_lines(_markdown(entries, title))
    if format == "text":
        return guard_lines(_text(entries, title))
    raise ValueError(f"unknown format {format!r}")


def _text(entries: Sequence[Entry], title: str) -> str:
    lines = [printable(title)] if title else []
    if not entries:
        lines.append("no checkpoint changes")
    for e in entries:
        lines += ["", f"=== {printable(e.label)} ===", printable(e.status)]
        if e.report:
            lines += ["", e.report.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _markdown(entries: Sequence[Entry], title: str) -> str:
    out = [f"# {md_text(title)}", ""]
    if not entries:
        out.append("No checkpoint changes.")
    else:
        out += ["| file | change |", "| --- | --- |"]
        out += [f"| {md_text(e.label)} | {md_text(e.status)} |" for e in entries]
    for e in entries:
        if e.report:
            out += ["", f"## {md_text(e.label)}", "", e.report.rstrip("\n")]
    return "\n".join(out) + "\n"


def _json(entries: Sequence[Entry], title: str, meta: Mapping[str, Any]) -> str:
    files = [{**e.record, "report": json.loads(e.report) if e.report else None} for e in entries]
    doc = {"title": title, **meta, "files": files}
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n"


def _h(text: str) -> str:
    return str(escape(printable(text)))


def _html(entries: Sequence[Entry], title: str) -> str:
    """A page listing every file, each full report embedded (escaped) in its own frame."""
    rows = "\n".join(
        f'<tr><td><a href="#f{i}">{_h(e.label)}</a></td><td>{_h(e.status)}</td></tr>'
        for i, e in enumerate(entries)
    )
    frames = "\n".join(
        f'<section id="f{i}"><h2>{_h(e.label)}</h2><p>{_h(e.status)}</p>'
        # scripts run (the report draws with them) in an opaque origin: the frame cannot
        # reach this page, and the report's own CSP still applies inside it
        + (
            f'<iframe title="{_h(e.label)}" sandbox="allow-scripts" '
            f'srcdoc="{escape(e.report)}"></iframe>'
            if e.report
            else ""
        )
        + "</section>"
        for i, e in enumerate(entries)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_h(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}"
        "table{border-collapse:collapse}td{border:1px solid #ccc;padding:.3em .6em}"
        "iframe{width:100%;height:80vh;border:1px solid #ccc}</style></head><body>"
        f"<h1>{_h(title)}</h1>"
        + (f"<table>{rows}</table>" if entries else "<p>No checkpoint changes.</p>")
        + frames
        + "</body></html>\n"
    )
