"""Reports of a diff: text (terminal), JSON (scripts), Markdown (PRs, CI) and HTML (browser).

``create_diff_report(diffs, summary, analysis, format=..., old_name=, new_name=, config=)``
is the original API; ``render(view, format)`` renders an already built ``ReportView``. Every
format groups tensors as added / removed / shape-changed / dtype-changed / modified /
unchanged with the insights first, and is byte-identical for the same inputs. This package
renders only: it never reads checkpoints, prints or writes files.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..analysis import Analysis
from ..diff import DiffConfig, DiffSummary, ParameterDiff
from ..terminal import guard_json, guard_lines
from .config import COLOR_SCHEMES, VisualizationConfig
from .view import ReportView, build_view, inputs_from_checkpoints

FORMATS = ("text", "json", "markdown", "html")

__all__ = [
    "COLOR_SCHEMES",
    "FORMATS",
    "ReportView",
    "VisualizationConfig",
    "build_view",
    "create_diff_report",
    "inputs_from_checkpoints",
    "render",
]


#: format -> (module, function). Imported on demand: the text report must not pay for jinja2.
_RENDERERS = {
    "text": ("text", "render_text"),
    "json": ("json_report", "render_json"),
    "markdown": ("markdown", "render_markdown"),
    "html": ("html", "render_html"),
}


def _renderer(format: str) -> Callable[[ReportView], str]:
    if format not in _RENDERERS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, not {format!r}")
    module, name = _RENDERERS[format]
    fn: Callable[[ReportView], str] = getattr(importlib.import_module(f".{module}", __name__), name)
    return fn


def render(view: ReportView, format: str = "text") -> str:
    """Render a built ``ReportView`` in ``format`` ("text", "json", "markdown" or "html").

    Text and Markdown are printed to terminals and CI logs: no line of them can become a
    workflow command (``terminal.guard_lines``); JSON keeps its data but escapes what a
    terminal would act on (``terminal.guard_json``). Names are escaped by each renderer.
    """
    text = _renderer(format)(view)
    if format in ("text", "markdown"):
        return guard_lines(text)
    if format == "json":
        return guard_json(text)
    return text


def create_diff_report(
    diffs: Sequence[ParameterDiff],
    summary: DiffSummary,
    analysis: Analysis | Mapping[str, Any] | None = None,
    format: str = "text",
    old_name: str | None = None,
    new_name: str | None = None,
    config: VisualizationConfig | None = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    diff_config: DiffConfig | Mapping[str, Any] | None = None,
    color: bool | None = None,
) -> str:
    """A report of a diff as a string.

    ``analysis`` is ``DiffAnalyzer.run``'s ``Analysis``, ``analyze``'s dict (the original
    API) or None (the report then has no insights).
    ``old_name``/``new_name`` label the two sides (default: the checkpoint paths).
    ``inputs`` ({"old": {...}, "new": {...}}, see ``inputs_from_checkpoints``) adds what the
    summary lacks (dtypes, sizes); ``diff_config`` is recorded in the JSON report. ``color``,
    when given, overrides ``config.color`` (ANSI colour in the text report).
    """
    _renderer(format)  # validate the format before any work
    if color is not None:
        config = dataclasses.replace(config or VisualizationConfig(), color=color)
    view = build_view(
        diffs,
        summary,
        analysis,
        old_name=old_name,
        new_name=new_name,
        config=config,
        inputs=inputs,
        diff_config=diff_config,
    )
    return render(view, format)
