"""The terminal report: plain text that reads well in 80 columns.

Colour (ANSI) only when ``VisualizationConfig.color`` is set (the CLI sets it for a TTY);
without it the output is pure text, fit for pipes, files and golden tests. Tensor names pass
through ``printable`` so a name cannot carry escape sequences to the terminal.
"""

from __future__ import annotations

import textwrap

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
    join_limited,
    shorten,
)
from .view import GROUPS, ReportView, block_profile

WIDTH = 80
_NAME_W = 48

_ANSI = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
_SEVERITY_STYLE = {"critical": "red", "warning": "yellow", "info": "cyan"}
_GROUP_STYLE = {
    "added": "green",
    "removed": "red",
    "shape_changed": "magenta",
    "dtype_changed": "magenta",
    "modified": "blue",
    "unchanged": "dim",
}


class _Out:
    def __init__(self, color: bool) -> None:
        self.color = color
        self.lines: list[str] = []

    def style(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        codes = ";".join(_ANSI[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def add(self, line: str = "") -> None:
        self.lines.append(line.rstrip())

    def heading(self, title: str, *styles: str) -> None:
        if self.lines and self.lines[-1]:
            self.add()
        self.add(self.style(title, "bold", *styles))


def render_text(view: ReportView) -> str:
    out = _Out(view.config.color)
    s = view.summary
    title = f"model-diff: {printable(view.old_name)} -> {printable(view.new_name)}"
    out.add(out.style(shorten(title, WIDTH), "bold"))
    out.add("=" * min(WIDTH, len(shorten(title, WIDTH))))
    for side, label in (("old", view.old_name), ("new", view.new_name)):
        _input_lines(out, side, printable(label), view.inputs[side])
    if view.pattern:
        out.add(f"pattern  {printable(view.pattern)}")
    if view.name_mapping:
        for i, line in enumerate(textwrap.wrap(printable(view.name_mapping), WIDTH - 9)):
            out.add(("mapping  " if i == 0 else " " * 9) + line)
    for label, text in view.pairing_lines():
        for i, line in enumerate(textwrap.wrap(printable(text), WIDTH - 9)):
            out.add((f"{label:<9}" if i == 0 else " " * 9) + line)

    out.heading("Summary")
    if view.diverged:
        for i, line in enumerate(textwrap.wrap(view.diverged, WIDTH - 2)):
            out.add("  " + (out.style(line, "bold", "red") if i == 0 else out.style(line, "red")))
    out.add(f"  {fmt_int(view.changed_count)} of {fmt_int(view.total_count)} tensors changed")
    # Two fixed lines (structural, then content changes): no width-dependent wrapping, so
    # coloured and plain output have the same layout.
    for keys in (GROUPS[:4], GROUPS[4:]):
        out.add(
            "  "
            + "   ".join(
                out.style(f"{heading.lower()} {fmt_int(view.counts[k])}", _GROUP_STYLE[k])
                for k, heading in keys
            )
        )
    out.add(
        f"  relative change  avg {fmt_pct(s.avg_relative_change)}"
        f"   max {fmt_pct(s.max_relative_change)}"
    )
    out.add(
        f"  cosine           avg {fmt_cos(s.avg_cosine_similarity)}"
        f"   min {fmt_cos(s.min_cosine_similarity)}"
    )
    if view.average_base:
        for line in textwrap.wrap(
            f"averages {view.average_base}", WIDTH - 19, break_on_hyphens=False
        ):
            out.add(" " * 19 + line)
    out.add(
        f"  elements         old {fmt_int(s.old_num_elements)}"
        f"   new {fmt_int(s.new_num_elements)}   changed {fmt_int(s.changed_elements)}"
    )
    if s.nonfinite_tensors:
        names = join_limited([printable(n) for n in s.nonfinite_tensors], 3)
        for i, line in enumerate(
            textwrap.wrap(
                f"{_plural(len(s.nonfinite_tensors), 'tensor')} with NaN/Inf in new: {names}",
                WIDTH - 19,
                break_on_hyphens=False,
            )
        ):
            out.add(("  non-finite       " if i == 0 else " " * 19) + out.style(line, "red"))
    else:
        out.add("  non-finite       none")

    if view.analysis is None:
        out.heading("Insights")
        out.add("  not computed (no analysis given)")
    else:
        out.heading(f"Insights ({len(view.insights)})")
        if not view.insights:
            out.add("  none")
        for ins in view.insights:
            tag = out.style(f"[{ins.severity.upper()}]", "bold", _SEVERITY_STYLE[ins.severity])
            head = f"{ins.title} ({ins.code})" if ins.code else ins.title
            if ins.level is not None:
                head += f" -> policy: {ins.level}"
            first, *rest = textwrap.wrap(
                printable(head), WIDTH - 4 - len(ins.severity) - 3, break_on_hyphens=False
            ) or [""]
            out.add(f"  {tag} {first}")
            for line in rest:
                out.add("      " + line)
            for line in textwrap.wrap(printable(ins.description), WIDTH - 6):
                out.add("      " + line)
            tensors = view.insight_tensors(ins)
            if tensors:
                names = "; ".join(printable(t) for t in tensors)
                for i, line in enumerate(
                    textwrap.wrap(f"tensors: {names}", WIDTH - 6, break_on_hyphens=False)
                ):
                    out.add("      " + (line if i == 0 else "  " + line))

    if view.quantization:
        _quantization_section(out, view)

    if view.layer_rows:
        out.heading("Layer types")
        out.add(
            f"  {'type':<10}{'tensors':>9}{'changed':>9}{'frozen':>8}"
            f"{'avg change':>12}{'max change':>12}{'avg cosine':>12}"
        )
        for r in view.layer_rows:
            out.add(
                f"  {shorten(printable(r.layer_type), 10):<10}{fmt_int(r.count):>9}"
                f"{fmt_int(r.changed):>9}{fmt_int(r.frozen):>8}{fmt_pct(r.avg_change):>12}"
                f"{fmt_pct(r.max_change):>12}{fmt_cos(r.avg_cosine):>12}"
            )

    depth = block_profile(view.depth_profile)
    if depth:
        out.heading("Change by depth (avg relative change per block)")
        top = max(v for _, v in depth) or 1.0
        width = max(len(label) for label, _ in depth)
        for label, value in depth:
            bar = "#" * max(1 if value > 0 else 0, round(40 * value / top))
            out.add(f"  block {label:>{width}} {fmt_pct(value):>9}  {bar}")

    _tensor_sections(out, view)
    out.add()
    return "\n".join(out.lines) + "\n"


def _quantization_section(out: _Out, view: ReportView) -> None:
    q = view.quantization or {}
    out.heading(
        f"Quantization ({printable(str(q.get('quantized_side')))} side vs "
        f"{printable(str(q.get('reference_side')))})"
    )
    for key, title in (("types", "type"), ("layer_types", "layer type")):
        out.add(
            f"  {title:<12}{'tensors':>8}{'exact':>7}{'rel.error':>11}{'max error':>11}"
            f"{'min cosine':>12}"
        )
        for label, g in view.quantization_rows(key):
            out.add(
                f"  {shorten(printable(label), 12):<12}{fmt_int(g.get('tensors')):>8}"
                f"{fmt_int(g.get('exact')):>7}{fmt_pct(g.get('aggregate_relative_error')):>11}"
                f"{fmt_pct(g.get('max_relative_error')):>11}{fmt_cos(g.get('min_cosine')):>12}"
            )
        out.add()
    out.add(f"  {'worst tensors by relative error':<{_NAME_W}}{'rel.error':>10}{'cosine':>10}")
    for w in q.get("worst") or []:
        _name_row(
            out,
            str(w.get("name")),
            f"{fmt_pct(w.get('relative_error')):>10}{fmt_cos(w.get('cosine')):>10}",
        )


def _plural(n: int, word: str) -> str:
    return f"{fmt_int(n)} {word}{'' if n == 1 else 's'}"


def _input_lines(out: _Out, side: str, label: str, info: dict[str, object]) -> None:
    path = info.get("path")
    fmt = info.get("format")
    where = printable(str(path)) if path else "-"
    if fmt:
        where += f" ({printable(str(fmt))})"
    head = f"{side}  {label}: {where}" if label != where.split(" (")[0] else f"{side}  {where}"
    out.add(shorten(head, WIDTH))
    parts = [
        f"{fmt_int(info.get('num_tensors'))} tensors",
        f"{fmt_params(info.get('num_parameters'))} parameters",
    ]
    dtypes = info.get("dtypes")
    if isinstance(dtypes, dict) and dtypes:
        parts.append(printable(fmt_dtypes(dtypes)))
    out.add(shorten("     " + ", ".join(parts), WIDTH))


def _name_row(out: _Out, name: str, cells: str, mark: str = " ") -> None:
    """One row: the name, then the cells; a long name or long cells get their own line."""
    shown = printable(name)
    if len(shown) <= _NAME_W and len(cells) <= WIDTH - 2 - _NAME_W:
        out.add(f" {mark}{shown:<{_NAME_W}}{cells}")
        return
    for i in range(0, len(shown), WIDTH - 2):
        out.add(f" {mark if i == 0 else ' '}{shown[i : i + WIDTH - 2]}")
    if len(cells) <= WIDTH - 2 - _NAME_W:
        out.add(f"  {'':<{_NAME_W}}{cells}")
    else:
        out.add(shorten("      " + cells.strip(), WIDTH))


def _tensor_sections(out: _Out, view: ReportView) -> None:
    flagged = False
    for key, title in GROUPS:
        total = view.counts[key]
        shown: list[ParameterDiff] = view.shown[key]
        if key == "unchanged":
            out.heading(f"{title} ({fmt_int(total)})", _GROUP_STYLE[key])
            out.add("  bit-identical tensors are counted, not listed" if total else "  none")
            continue
        if not total and not view.groups[key]:
            continue
        note = f", showing {len(shown)}" if len(shown) < len(view.groups[key]) else ""
        out.heading(f"{title} ({fmt_int(total)}{note})", _GROUP_STYLE[key])
        if key in ("added", "removed"):
            out.add(f"  {'name':<{_NAME_W}}{'shape':<20}dtype")
            for d in shown:
                shape = d.new_shape if key == "added" else d.old_shape
                dtype = d.new_dtype if key == "added" else d.old_dtype
                _name_row(out, d.name, f"{shorten(fmt_shape(shape), 19):<20}{dtype or '-'}")
        elif key == "shape_changed":
            out.add(f"  {'name':<{_NAME_W}}old shape -> new shape")
            for d in shown:
                cells = f"{fmt_shape(d.old_shape)} -> {fmt_shape(d.new_shape)}"
                if d.relative_change is not None:
                    cells += f", overlap rel.change {fmt_pct(d.relative_change)}"
                _name_row(out, d.name, cells)
        else:
            if key == "dtype_changed":
                out.add(f"  {'name':<{_NAME_W}}{'old -> new dtype':<20}{'rel.change':>10}")
            else:
                out.add(f"  {'name':<{_NAME_W}}{'rel.change':>10}{'cosine':>10}{'l2 diff':>10}")
            for d in shown:
                mark = "!" if d.nonfinite_new else " "
                flagged = flagged or d.nonfinite_new > 0
                if key == "dtype_changed":
                    cells = (
                        f"{shorten(f'{d.old_dtype} -> {d.new_dtype}', 19):<20}"
                        f"{fmt_pct(d.relative_change):>10}"
                    )
                else:
                    cells = (
                        f"{fmt_pct(d.relative_change):>10}{fmt_cos(d.cosine_sim):>10}"
                        f"{fmt_float(d.l2_diff):>10}"
                    )
                _name_row(out, d.name, cells, mark)
    if flagged:
        out.add()
        out.add("  ! = the new tensor holds NaN or Inf values")
    if view.truncated:
        out.add()
        for line in textwrap.wrap(
            f"Showing the {view.shown_count} most changed of {view.listed_changed} changed "
            f"tensors (max_layers_display={view.config.max_layers_display}); "
            "use --format json for all of them.",
            WIDTH - 2,
        ):
            out.add("  " + line)
