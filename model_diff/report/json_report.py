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
from ..diff import ParameterDiff
from .view import GROUPS, PAIRED, ReportView, jsonable

#: Bump the major on a breaking change of the document's shape, the minor on additions.
SCHEMA_VERSION = "1.1"


def report_dict(view: ReportView) -> dict[str, Any]:
    """The report as a plain dict (what ``render_json`` serialises)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "model-diff", "version": __version__},
        "old_name": view.old_name,
        "new_name": view.new_name,
        "inputs": view.inputs,
        "config": {"diff": view.diff_config, "visualization": view.config.to_dict()},
        "counts": {**view.counts, **{k: len(v) for k, v in view.paired.items()}},
        "summary": _record(view.summary.to_dict()),
        "analysis": _analysis(view),
        "tensors": {
            **{k: [_tensor(d) for d in view.groups[k]] for k, _ in GROUPS},
            # renamed / tied: only when present, so reports without them keep their shape
            **{k: [_tensor(d) for d in view.paired[k]] for k, _ in PAIRED if k in view.paired},
        },
    }


def _analysis(view: ReportView) -> dict[str, Any] | None:
    """``Analysis.to_dict()`` without ``low_rank.tensors`` (each tensor's record has its own)."""
    if view.analysis is None:
        return None
    out = view.analysis.to_dict()
    out["low_rank"] = {k: v for k, v in out["low_rank"].items() if k != "tensors"}
    doc: dict[str, Any] = jsonable(out)
    return doc


def _record(d: dict[str, Any]) -> dict[str, Any]:
    """A dataclass's ``to_dict()`` in field order, values made JSON-safe."""
    return {k: jsonable(v) for k, v in d.items()}


def _tensor(d: ParameterDiff) -> dict[str, Any]:
    # to_dict() is JSON-safe already (non-finite floats -> None); only the free-form
    # low-rank record needs the deep pass. allow_nan=False below catches any miss.
    out = d.to_dict()
    if out.get("low_rank") is not None:
        out["low_rank"] = jsonable(out["low_rank"])
    return out


#: One line, by the C encoder (indent= forces the slow Python one); made once, not per record.
_ONE_LINE = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(", ", ": "))


def _dumps(obj: Any, indent: int | None) -> str:
    if indent is None:
        return _ONE_LINE.encode(obj)
    return json.dumps(obj, indent=indent, allow_nan=False, ensure_ascii=False)


def render_json(view: ReportView) -> str:
    """The document, indented, with one line per tensor record.

    One line per tensor keeps a 10,000-tensor report fast to write (the C encoder) and makes
    two reports diff line by line, tensor by tensor.
    """
    doc = report_dict(view)
    tensors = doc.pop("tensors")
    head = _dumps(doc, 2)
    assert head.endswith("\n}")  # for mypy and readers: json.dumps(indent=2) of a dict
    groups = []
    for key, records in tensors.items():
        if not records:
            groups.append(f"    {json.dumps(key)}: []")
            continue
        body = ",\n".join("      " + _dumps(r, None) for r in records)
        groups.append(f"    {json.dumps(key)}: [\n{body}\n    ]")
    return head[:-2] + ',\n  "tensors": {\n' + ",\n".join(groups) + "\n  }\n}\n"
