"""Reports of a diff: text (terminal), JSON (scripts), Markdown (PRs, CI) and HTML (browser).

``create_diff_report(diffs, summary, analysis, format=..., old_name=, new_name=, config=)``
is the original API; ``render(view, format)`` renders an already built ``ReportView``. Every
format groups tensors as added / removed / shape-changed / dtype-changed / modified /
unchanged with the insights first, and is byte-identical for the same inputs. This package
renders only: it never reads checkpoints, prints or writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..diff import DiffConfig, DiffSummary, ParameterDiff
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


def _renderer(format: str) -> Callable[[ReportView], str]:
    # Imported on demand: the text report must not pay for jinja2.
    if format == "text":
        from .text import render_text

        return render_text
    if format == "json":
        from .json_report import render_json

        return render_json
    if format == "markdown":
        from .markdown import render_markdown

        return render_markdown
    if format == "html":
        from .html import render_html

        return render_html
    raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, not {format!r}")


def render(view: ReportView, format: str = "text") -> str:
    """Render a built ``ReportView`` in ``format`` ("text", "json", "markdown" or "html")."""
    return _renderer(format)(view)


def create_diff_report(
    diffs: Sequence[ParameterDiff],
    summary: DiffSummary,
    analysis: Mapping[str, Any] | None = None,
    format: str = "text",
    old_name: str | None = None,
    new_name: str | None = None,
    config: VisualizationConfig | None = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    diff_config: DiffConfig | Mapping[str, Any] | None = None,
) -> str:
    """A report of a diff as a string.

    ``analysis`` is ``DiffAnalyzer.analyze``'s dict or None (the report then has no insights).
    ``old_name``/``new_name`` label the two sides (default: the checkpoint paths).
    ``inputs`` ({"old": {...}, "new": {...}}, see ``inputs_from_checkpoints``) adds what the
    summary lacks (dtypes, sizes); ``diff_config`` is recorded in the JSON report.
    """
    render_fn = _renderer(format)  # validate the format before any work
    view = build_view(diffs, summary, analysis, old_name=old_name, new_name=new_name,
                      config=config, inputs=inputs, diff_config=diff_config)
    return render_fn(view)
