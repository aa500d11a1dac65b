"""Check results as text, JSON and Markdown: strings only, deterministic, no I/O.

Tensor and file names come from the checkpoint and may hold anything a string can (newlines,
``|``, ``<``): text output escapes control characters so every finding stays on one line;
Markdown escapes table and HTML syntax with the reports' one escaper
(``model_diff.report.markdown.md_text``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from model_diff.report.markdown import md_text
from model_diff.terminal import guard_json, guard_lines, printable

from .gate import FileResult
from .policy import Policy


def counts(results: Sequence[FileResult]) -> dict[str, int]:
    vs = [v for r in results for v in r.violations]
    return {
        "files": len(results),
        "failed": sum(r.status == "failed" for r in results),
        "warnings_only": sum(r.status == "warnings" for r in results),
        "unreadable": sum(r.status == "unreadable" for r in results),
        "errors": sum(v.level == "error" for v in vs),
        "warnings": sum(v.level == "warning" for v in vs),
    }


def headline(results: Sequence[FileResult], command: str) -> str:
    c = counts(results)
    return (
        f"model-diff {command}: {c['files']} checkpoint(s): {c['failed']} failed, "
        f"{c['warnings_only']} with warnings, {c['unreadable']} unreadable "
        f"({c['errors']} error(s), {c['warnings']} warning(s))"
    )


def _sides(r: FileResult) -> str:
    if r.mode == "health":
        return "no base: single-file checks"
    return f"{r.old_label} -> {r.new_label}"


def render_text(
    results: Sequence[FileResult], command: str = "check", deleted: Sequence[str] = ()
) -> str:
    lines = [headline(results, command)]
    for r in results:
        tag = {"ok": "ok", "warnings": "WARN", "failed": "FAILED", "unreadable": "UNREADABLE"}
        lines.append(f"{tag[r.status]:<10} {printable(r.path)} ({printable(_sides(r))})")
        if r.error is not None:
            lines.append(f"  error: {printable(r.error)}")
        for v in r.violations:
            lines.append(f"  {v.level:<7} {v.code}: {printable(v.message)}")
    for d in deleted:
        lines.append(f"{'deleted':<10} {printable(d)} (not checked)")
    return guard_lines("\n".join(lines) + "\n")


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def render_json(
    results: Sequence[FileResult], policy: Policy, fail_on: str, deleted: Sequence[str] = ()
) -> str:
    doc = {
        "version": 1,
        "fail_on": fail_on,
        "policy": policy.to_dict(),
        "counts": counts(results),
        "files": [r.to_dict() for r in results],
        "deleted": list(deleted),
    }
    return guard_json(
        json.dumps(_json_safe(doc), indent=2, sort_keys=False, allow_nan=False) + "\n"
    )


_STATUS_MD = {
    "ok": "✅ ok",
    "warnings": "⚠️ warnings",
    "failed": "❌ failed",
    "unreadable": "❌ unreadable",
}


def render_details(results: Sequence[FileResult]) -> str:
    """The full diff report of every compared pair, one after the other (unbounded)."""
    parts = [f"\n---\n\n{r.detail}" for r in results if r.detail]
    return "".join(parts)


def _bounded(rows: Sequence[str], budget: int) -> tuple[list[str], int]:
    """The leading ``rows`` that fit in ``budget`` bytes, and how many were left out."""
    kept: list[str] = []
    used = 0
    for row in rows:
        n = len(row.encode()) + 1
        if used + n > budget:
            break
        kept.append(row)
        used += n
    return kept, len(rows) - len(kept)


def render_markdown(
    results: Sequence[FileResult],
    command: str = "check",
    deleted: Sequence[str] = (),
    *,
    max_bytes: int = 256 * 1024,
) -> str:
    """A Markdown summary: one row per file, then one row per finding, within ``max_bytes``.

    The file table may use half the budget, the findings the rest; rows that do not fit are
    counted in a closing line instead.
    """
    head = ["## model-diff " + command, "", md_text(headline(results, command)), ""]
    file_rows = [
        f"| {md_text(r.path)} | {md_text(_sides(r))} | {_STATUS_MD[r.status]} | "
        f"{r.stats.get('tensors', '')} | {r.stats.get('changed', '')} |"
        for r in results
    ]
    file_rows += [f"| {md_text(d)} | deleted | not checked | | |" for d in deleted]
    finding_rows = [
        f"| {md_text(r.path)} | error | unreadable | {md_text(r.error)} |"
        for r in results
        if r.error is not None
    ]
    finding_rows += [
        f"| {md_text(r.path)} | {v.level} | {v.code} | {md_text(v.message)} |"
        for r in results
        for v in r.violations
    ]
    reserve = 1024  # headings, table headers and the closing notes
    files, files_left = _bounded(file_rows, max(0, max_bytes // 2 - reserve))
    out = [
        *head,
        "| Checkpoint | Compared | Status | Tensors | Changed |",
        "|---|---|---|---:|---:|",
        *files,
    ]
    if files_left:
        out += ["", f"_{files_left} more checkpoint(s) not shown (summary size limit)._"]
    used = len("\n".join(out).encode())
    findings, findings_left = _bounded(finding_rows, max(0, max_bytes - used - reserve))
    if finding_rows:
        out += ["", "| Checkpoint | Level | Code | Details |", "|---|---|---|---|", *findings]
    if findings_left:
        out += [
            "",
            f"_{findings_left} more finding(s) not shown (summary size limit); "
            "run `model-diff ci --format json` for all of them._",
        ]
    return guard_lines("\n".join(out) + "\n")
