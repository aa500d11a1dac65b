"""GitHub Actions output: workflow-command annotations, the job summary and step outputs.

Escaping follows the Actions toolkit (``command.ts``): a message escapes ``%``, ``\\r`` and
``\\n``; a property value (``file``, ``title``) also escapes ``:`` and ``,``. Before that,
``command`` passes every value through ``model_diff.terminal.printable``: ESC, BEL, bidi
overrides and other controls are shown escaped, not sent to the log. GitHub keeps at
most 10 error and 10 warning annotations per step, so only the worst of each are emitted and
one notice points at the job summary, which holds every finding. The summary is bounded well
under GitHub's 1 MiB per-step limit. Functions return strings or write only to the files
GitHub names in ``$GITHUB_STEP_SUMMARY`` / ``$GITHUB_OUTPUT``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence

from model_diff.terminal import printable

from .check import CODE_RANK, Violation
from .gate import FileResult

#: GitHub's per-step cap on annotations of each level.
MAX_PER_LEVEL = 10
#: The job summary this writes stays under this many bytes (GitHub's hard limit is 1 MiB).
SUMMARY_MAX_BYTES = 512 * 1024


def escape_data(s: str) -> str:
    """A workflow command's message."""
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    """A workflow command's property value (``file=``, ``title=``)."""
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **props: str) -> str:
    """``::kind prop=value,...::message`` with everything escaped (``printable`` first)."""
    p = ",".join(f"{k}={escape_property(printable(v))}" for k, v in props.items())
    return f"::{kind}{' ' + p if p else ''}::{escape_data(printable(message))}"


def _ranked(results: Sequence[FileResult]) -> list[tuple[str, str, str, str]]:
    """(level, file, title, message) of every finding, worst first."""
    items: list[tuple[tuple[int, int, int, str], tuple[str, str, str, str]]] = []
    for r in results:
        if r.error is not None:
            items.append(
                ((0, -1, 0, r.path), ("error", r.path, f"model-diff: unreadable {r.path}", r.error))
            )
        for v in r.violations:
            key = (
                0 if v.level == "error" else 1,
                CODE_RANK.get(v.code, 50),
                -len(v.tensors),
                r.path,
            )
            items.append((key, (v.level, r.path, _title(v), v.message)))
    items.sort(key=lambda kv: kv[0])
    return [it for _, it in items]


def _title(v: Violation) -> str:
    return f"model-diff {v.code}: {v.title}"


def annotation_lines(results: Sequence[FileResult]) -> list[str]:
    """Annotation lines: the worst 10 errors and 10 warnings, then a notice for the rest."""
    lines = []
    shown = {"error": 0, "warning": 0}
    left = {"error": 0, "warning": 0}
    for level, path, title, message in _ranked(results):
        if shown[level] < MAX_PER_LEVEL:
            lines.append(command(level, message, file=path, title=title))
            shown[level] += 1
        else:
            left[level] += 1
    if left["error"] or left["warning"]:
        lines.append(
            command(
                "notice",
                f"{left['error']} more error(s) and {left['warning']} more warning(s) "
                "not annotated (GitHub shows 10 of each per step): "
                "see the job summary for every finding",
                title="model-diff: more findings in the job summary",
            )
        )
    return lines


def append_summary(markdown: str, path: str | os.PathLike[str]) -> None:
    """Append ``markdown`` to the step summary file (bounded by ``SUMMARY_MAX_BYTES``)."""
    data = markdown.encode("utf-8")
    if len(data) > SUMMARY_MAX_BYTES:  # render_markdown already bounds itself; be safe
        data = data[: SUMMARY_MAX_BYTES - 64].decode("utf-8", errors="ignore").encode()
        data += b"\n\n_summary truncated (size limit)_\n"
    with open(path, "ab") as f:
        f.write(data)
        if not data.endswith(b"\n"):
            f.write(b"\n")


def format_outputs(outputs: Mapping[str, str]) -> str:
    """``$GITHUB_OUTPUT`` lines: ``name=value``, or ``name<<DELIM`` blocks for multiline values."""
    out = []
    for name, value in outputs.items():
        if "\n" in value or "\r" in value:
            delim = f"ghadelimiter_{secrets.token_hex(16)}"
            while delim in value:  # pragma: no cover - 128 random bits
                delim = f"ghadelimiter_{secrets.token_hex(16)}"
            out.append(f"{name}<<{delim}\n{value}\n{delim}\n")
        else:
            out.append(f"{name}={value}\n")
    return "".join(out)


def write_outputs(outputs: Mapping[str, str], path: str | os.PathLike[str]) -> None:
    with open(path, "a", encoding="utf-8", newline="\n") as f:
        f.write(format_outputs(outputs))
