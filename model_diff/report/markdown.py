"""The Markdown report: GitHub-flavoured, for pull-request comments and CI job summaries.

Size-bounded: the report never exceeds ``VisualizationConfig.max_chars``; when the tensor
tables would not fit, rows are cut (most important groups first) and a note says so. Names
from a checkpoint go into code spans (no Markdown, HTML or @mention inside) with ``|``
escaped for tables; other text is backslash-escaped. This module must not emit raw HTML
built from checkpoint strings.
"""

from __future__ import annotations

import re

from .. import __version__
from ..diff import ParameterDiff
from ..terminal import printable
from .formatting import (
    fmt_cos,
    fmt_dtypes,
    fmt_float,
    fmt_int,
    fmt_params,
    fmt_pct,
    fmt_shape,
)
from .view import GROUPS, ReportView, block_profile

_SPECIALS = re.compile(r"([\\`*_\[\]<>|~&#@!])")
_SEVERITY_LABEL = {"critical": "CRITICAL", "warning": "WARNING", "info": "info"}


def md_text(text: str) -> str:
    """Plain text safe inside Markdown (and inside a table cell): specials backslash-escaped."""
    return _SPECIALS.sub(r"\\\1", printable(text))


def md_code(text: str) -> str:
    """``text`` as an inline code span that survives any backticks and table pipes in it."""
    text = printable(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _row(key: str, d: ParameterDiff) -> list[str]:
    name = md_code(d.name) + (" :warning: NaN/Inf" if d.nonfinite_new else "")
    if key in ("added", "removed", "shape_changed", "dtype_changed"):
        return [
            name,
            fmt_shape(d.old_shape),
            fmt_shape(d.new_shape),
            md_text(d.old_dtype or "-"),
            md_text(d.new_dtype or "-"),
            fmt_pct(d.relative_change),
        ]
    return [
        name,
        fmt_pct(d.relative_change),
        fmt_cos(d.cosine_sim),
        fmt_float(d.l2_diff),
        fmt_float(d.max_diff),
        fmt_pct(d.change_ratio),
    ]


_HEADERS = {
    "structural": (
        ["tensor", "old shape", "new shape", "old dtype", "new dtype", "rel. change"],
        "llllll",
    ),
    "modified": (
        ["tensor", "rel. change", "cosine", "L2 diff", "max diff", "changed elements"],
        "lrrrrr",
    ),
}


def render_markdown(view: ReportView) -> str:
    s = view.summary
    head: list[str] = [f"## model-diff: {md_code(view.old_name)} → {md_code(view.new_name)}", ""]
    inputs_rows = []
    o, n = view.inputs["old"], view.inputs["new"]

    def cell(v: object) -> str:
        return md_code(str(v)) if v else "-"

    inputs_rows.append(["checkpoint", cell(o.get("path")), cell(n.get("path"))])
    inputs_rows.append(
        ["format", md_text(str(o.get("format") or "-")), md_text(str(n.get("format") or "-"))]
    )
    inputs_rows.append(["tensors", fmt_int(o.get("num_tensors")), fmt_int(n.get("num_tensors"))])
    inputs_rows.append(
        ["parameters", fmt_params(o.get("num_parameters")), fmt_params(n.get("num_parameters"))]
    )
    od, nd = o.get("dtypes"), n.get("dtypes")
    if od or nd:
        inputs_rows.append(
            [
                "dtypes",
                md_text(fmt_dtypes(od if isinstance(od, dict) else None)),
                md_text(fmt_dtypes(nd if isinstance(nd, dict) else None)),
            ]
        )
    head += [*_table(["", "old", "new"], inputs_rows, "lll"), ""]
    if view.diverged:
        head += [f"**:x: {md_text(view.diverged)}.**", ""]
    counts = " · ".join(f"{t.lower()} **{fmt_int(view.counts[k])}**" for k, t in GROUPS)
    head.append(
        f"**{fmt_int(view.changed_count)} of {fmt_int(view.total_count)} tensors "
        f"changed**: {counts}"
    )
    head.append("")
    facts = [
        f"avg relative change {fmt_pct(s.avg_relative_change)} "
        f"(max {fmt_pct(s.max_relative_change)})",
        f"avg cosine {fmt_cos(s.avg_cosine_similarity)} (min {fmt_cos(s.min_cosine_similarity)})",
    ]
    if view.average_base:
        facts.append(f"averages {md_text(view.average_base)}")
    if view.pattern:
        facts.insert(0, f"pattern {md_code(view.pattern)}")
    head.append(" · ".join(facts))
    head.append("")
    if view.name_mapping:
        head += [f"Name mapping: {md_text(view.name_mapping)}", ""]
    pairing = view.pairing_lines()
    if pairing:
        head += [f"- {label}: {md_text(text)}" for label, text in pairing] + [""]

    head.append("### Insights")
    head.append("")
    if view.analysis is None:
        head.append("_Not computed (no analysis given)._")
    elif not view.insights:
        head.append("_None._")
    for ins in view.insights:
        line = f"- **{_SEVERITY_LABEL[ins.severity]}** {md_text(ins.title)}"
        if ins.code:
            line += f" ({md_code(ins.code)})"
        if ins.level is not None:
            line += f" **policy: {ins.level}**"
        if ins.description:
            line += f": {md_text(ins.description)}"
        tensors = view.insight_tensors(ins)
        if tensors:
            line += " Tensors: " + "; ".join(md_text(t) for t in tensors)
        head.append(line)
    head.append("")

    if view.quantization:
        head += _quantization_section(view)

    if view.layer_rows:
        head.append("### Layer types")
        head.append("")
        rows = [
            [
                md_text(r.layer_type),
                fmt_int(r.count),
                fmt_int(r.changed),
                fmt_int(r.frozen),
                fmt_pct(r.avg_change),
                fmt_pct(r.max_change),
                fmt_cos(r.avg_cosine),
            ]
            for r in view.layer_rows
        ]
        head += _table(
            ["type", "tensors", "changed", "frozen", "avg change", "max change", "avg cosine"],
            rows,
            "lrrrrrr",
        )
        head.append("")

    depth = block_profile(view.depth_profile)
    if depth:
        head.append("### Change by depth")
        head.append("")
        top = max(v for _, v in depth) or 1.0
        head += _table(
            ["block", "avg relative change", ""],
            [
                [label, fmt_pct(v), "█" * max(1 if v > 0 else 0, round(20 * v / top))]
                for label, v in depth
            ],
            "lrl",
        )
        head.append("")

    footer = ["", f"<sub>model-diff {__version__}</sub>", ""]
    return _fit_tensors(view, "\n".join(head), "\n".join(footer))


def _quantization_section(view: ReportView) -> list[str]:
    q = view.quantization or {}
    lines = [
        f"### Quantization ({md_text(str(q.get('quantized_side')))} side vs "
        f"{md_text(str(q.get('reference_side')))})",
        "",
    ]
    for key, title in (("types", "type"), ("layer_types", "layer type")):
        rows = [
            [
                md_text(label),
                fmt_int(g.get("tensors")),
                fmt_int(g.get("exact")),
                fmt_pct(g.get("aggregate_relative_error")),
                fmt_pct(g.get("max_relative_error")),
                fmt_cos(g.get("min_cosine")),
            ]
            for label, g in view.quantization_rows(key)
        ]
        lines += _table(
            [title, "tensors", "exact", "relative error", "max error", "min cosine"],
            rows,
            "lrrrrr",
        )
        lines.append("")
    worst = [
        [md_code(str(w.get("name"))), fmt_pct(w.get("relative_error")), fmt_cos(w.get("cosine"))]
        for w in q.get("worst") or []
    ]
    if worst:
        lines += _table(["worst tensors", "relative error", "cosine"], worst, "lrr")
        lines.append("")
    return lines


def _fit_tensors(view: ReportView, head: str, footer: str) -> str:
    """Append the tensor tables, cutting rows so the whole report fits ``max_chars``."""
    budget = view.config.max_chars
    cut_note_room = 400
    # Collapsed in a PR comment: the summary and insights stay in view, the tables one click
    # away. The <summary> holds only counts, never a checkpoint string.
    listed = view.shown_count
    parts: list[str] = [
        "### Tensors",
        "",
        f"<details><summary>{fmt_int(view.changed_count)} changed tensors, "
        f"{fmt_int(listed)} listed</summary>",
        "",
    ]
    used = len(head) + len(footer) + cut_note_room + sum(len(p) + 1 for p in parts)
    written = 0
    cut = False
    for key, title in GROUPS:
        if key == "unchanged":
            line = f"**{title}: {fmt_int(view.counts[key])}** (bit-identical; counted, not listed)"
            used += len(line) + 2
            parts += [line, ""]
            continue
        shown = view.shown[key]
        if not shown:
            continue
        header, align = _HEADERS["modified" if key == "modified" else "structural"]
        total = view.counts[key]
        section = [f"#### {title} ({fmt_int(total)})", "", *_table(header, [], align)]
        size = sum(len(p) + 1 for p in section)
        if cut or used + size > budget:
            cut = True
            break
        rows: list[str] = []
        for d in shown:
            line = "| " + " | ".join(_row(key, d)) + " |"
            if used + size + len(line) + 1 > budget:
                cut = True
                break
            rows.append(line)
            size += len(line) + 1
        if not rows:
            cut = True
            break
        parts += [*section, *rows, ""]
        used += size + 1
        written += len(rows)
        if cut:
            break
    notes = []
    if cut:
        notes.append(
            f"_Tensor tables cut after {written} rows to stay under "
            f"{view.config.max_chars:,} characters; the JSON report lists every tensor._"
        )
    elif view.truncated:
        notes.append(
            f"_Showing the {view.shown_count} most changed of {view.listed_changed} "
            f"changed tensors (max\\_layers\\_display={view.config.max_layers_display})._"
        )
    body = "\n".join([*parts, *notes, "", "</details>"])
    text = head + "\n" + body + "\n" + footer
    if len(text) > budget:  # only when the head alone (insights, names) is too long
        keep = text[: budget - 200].rsplit("\n", 1)[0]
        text = keep + f"\n\n_Report cut at {budget:,} characters; see the JSON report._\n"
    return text
