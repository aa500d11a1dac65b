"""The JSON report: strict JSON for scripts, with a schema (``schema.json``) that pins it.

Key order is fixed by construction (our own objects) or sorted (analysis dicts); floats that
are NaN or Inf become ``null`` (their counts live in the per-side statistics), and the
encoder runs with ``allow_nan=False`` so a stray non-finite value fails loudly instead of
producing invalid JSON. This module must not read the report options' presentation fields
beyond recording them in ``config``.
"""

from __future__ import annotations

import json
from typing import Any

from .. import __version__
from .view import GROUPS, ReportView, jsonable

#: Bump the major on a breaking change of the document's shape, the minor on additions.
SCHEMA_VERSION = "1.0"


def report_dict(view: ReportView) -> dict[str, Any]:
    """The report as a plain dict (what ``render_json`` serialises)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "model-diff", "version": __version__},
        "old_name": view.old_name,
        "new_name": view.new_name,
        "inputs": view.inputs,
        "config": {"diff": view.diff_config, "visualization": view.config.to_dict()},
        "counts": dict(view.counts),
        "summary": _record(view.summary.to_dict()),
        "analysis": view.analysis,
        "tensors": {k: [_record(d.to_dict()) for d in view.groups[k]] for k, _ in GROUPS},
    }


def _record(d: dict[str, Any]) -> dict[str, Any]:
    """A dataclass's ``to_dict()`` in field order, values made JSON-safe."""
    return {k: jsonable(v) for k, v in d.items()}


def render_json(view: ReportView) -> str:
    return json.dumps(report_dict(view), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
