"""The HTML report: one self-contained page (inline CSS, JS and SVG; no network at all).

Rendered with a jinja2 environment that autoescapes everything; the only ``Markup`` that
reaches the template is the SVG built (and escaped) in ``charts`` and JSON made safe for a
``<script type="application/json">`` block by ``script_json`` (``<``, ``>``, ``&`` and the
JavaScript line separators as ``\\uXXXX`` escapes, so no tensor name can close the script).
This module must not load anything from the network or write files.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from .. import __version__
from ..layers import block_position
from ..terminal import printable
from . import charts
from .block_heatmap import MIN_BLOCKS, block_heatmap
from .formatting import (
    fmt_cos,
    fmt_dtypes,
    fmt_float,
    fmt_int,
    fmt_params,
    fmt_pct,
    fmt_shape,
)
from .json_report import report_dict
from .view import GROUP_TITLES, GROUPS, ReportView

_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


#: A JSON string (kept as is) or a number with an exponent (rewritten without one).
_JSON_STRING_OR_E_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?[eE][+-]?\d+')


def _positional(m: re.Match[str]) -> str:
    token = m.group(0)
    if token.startswith('"'):
        return token
    text = format(Decimal(token), "f")
    return text if "." in text else text + ".0"  # still a float when read back


def positional_json(text: str) -> str:
    """JSON text with every number written without an exponent (``1.2e-05`` ->
    ``0.000012``): the same values (Python's shortest repr, digit for digit), so a page
    shows no e-notation even in its embedded data."""
    return _JSON_STRING_OR_E_NUMBER.sub(_positional, text)


def script_json(obj: Any, indent: int | None = None) -> Markup:
    """JSON safe to place verbatim inside ``<script type="application/json">``, its numbers
    without exponents (``positional_json``)."""
    text = positional_json(
        json.dumps(
            obj,
            allow_nan=False,
            ensure_ascii=False,
            indent=indent,
            separators=None if indent else (",", ":"),
        )
    )
    for ch, esc in _SCRIPT_ESCAPES.items():
        text = text.replace(ch, esc)
    return Markup(text)  # noqa: S704 - every character that could end the script is escaped


def breakable(name: str) -> Markup:
    """``name`` escaped, with a line-break opportunity after each dot and underscore."""
    text = str(escape(printable(name)))  # escaped first: the inserted <wbr> is the only markup
    return Markup(text.replace(".", ".<wbr>").replace("_", "_<wbr>"))  # noqa: S704


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("model_diff.report", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=fmt_pct,
        cos=fmt_cos,
        num=fmt_float,
        int=fmt_int,
        params=fmt_params,
        shape=fmt_shape,
        dtypes=fmt_dtypes,
        printable=printable,
        breakable=breakable,
    )
    return env


def environment() -> jinja2.Environment:
    """The package's autoescaping template environment (also the three-way report's)."""
    return _environment()


def _table_rows(view: ReportView) -> list[dict[str, Any]]:
    rows = []
    for key, _ in GROUPS:
        for d in view.shown[key]:
            rows.append(
                {
                    "name": d.name,
                    "change": key,
                    "change_title": GROUP_TITLES[key],
                    "shape": (
                        fmt_shape(d.old_shape)
                        if d.old_shape == d.new_shape or d.new_shape is None
                        else fmt_shape(d.new_shape)
                        if d.old_shape is None
                        else f"{fmt_shape(d.old_shape)} → {fmt_shape(d.new_shape)}"
                    ),
                    "dtype": (d.new_dtype or d.old_dtype or "-")
                    if d.old_dtype == d.new_dtype or d.old_dtype is None or d.new_dtype is None
                    else f"{d.old_dtype} → {d.new_dtype}",
                    "rel": d.relative_change,
                    "cos": d.cosine_sim,
                    "l2": d.l2_diff,
                    "max": d.max_diff,
                    "ratio": d.change_ratio,
                    "nonfinite": d.nonfinite_new,
                    "elements": d.num_elements,
                }
            )
    return rows


def _nonfinite_cells(view: ReportView) -> dict[tuple[str, str], int]:
    """Tensors with NaN/Inf in the new checkpoint per (block label, layer type)."""
    types = view.tensor_types
    out: dict[tuple[str, str], int] = {}
    for ds in view.groups.values():
        for d in ds:
            pos = block_position(d.name) if d.nonfinite_new else None
            if pos is not None:
                key = (pos.label, types.get(d.name, "other"))
                out[key] = out.get(key, 0) + 1
    return out


def render_html(view: ReportView) -> str:
    cfg = view.config
    w, h = cfg.chart_width, cfg.chart_height
    rows = _table_rows(view)
    changed = [d for k, v in view.groups.items() if k != "unchanged" for d in v]
    lr_rows = charts.low_rank_rows(view.low_rank_diffs)
    chart_list = [
        (
            "depth",
            "Relative change by depth",
            "Average relative change (‖Δ‖/‖old‖) of each block's tensors, per layer type.",
            charts.depth_chart(view.depth_profile, w, h),
            "No per-block data: no analysis was given or no tensor name carries a block index.",
        ),
        (
            "layers",
            "Layer types",
            "Tensors changed vs frozen, and how much each layer type moved.",
            charts.layer_type_chart(view.layer_rows, w, h),
            "No layer-type analysis was given.",
        ),
        (
            "cosine",
            "Cosine similarity",
            "Direction kept by each changed tensor (old vs new); each band runs from its label "
            "up to the next band (bands of 1 − cos, log scale).",
            charts.cosine_histogram(changed, w, h),
            "No changed tensor has a cosine similarity (nothing was compared element-wise).",
        ),
    ]
    heat = block_heatmap(view.depth_profile, _nonfinite_cells(view), w)
    if heat is not None:
        chart_list.insert(
            1,
            (
                "blockheat",
                "Blocks × layer types",
                f"Average relative change of each block's tensors per layer type (log colour "
                f"scale; drawn from {MIN_BLOCKS} blocks on); hatched: every tensor frozen "
                f"(bit-identical); red: NaN/Inf in the new checkpoint, with the number of "
                f"such tensors. Hover a cell for its value.",
                heat,
                "",
            ),
        )
    lr_chart = charts.low_rank_chart(lr_rows, w, h)
    if lr_chart is not None or view.low_rank_summary:
        chart_list.append(
            (
                "lowrank",
                "Low-rank structure",
                "Rank that captures 90% / 99% of each 2-D delta's energy (a LoRA of that rank "
                "reproduces it); the lowest-rank deltas first.",
                lr_chart,
                "No per-tensor low-rank record to draw.",
            )
        )
    table_data = [
        [
            r["name"],
            r["change"],
            r["rel"],
            r["cos"],
            r["l2"],
            r["max"],
            r["ratio"],
            r["nonfinite"],
            r["elements"],
        ]
        for r in rows
    ]
    raw = report_dict(view) if cfg.include_raw_data else None
    # Raw data is shown once, as escaped text in a <pre> (the download button reads it back).
    template = _environment().get_template("report.html.j2")
    return template.render(
        v=view,
        s=view.summary,
        cfg=cfg,
        version=__version__,
        groups=GROUPS,
        charts=chart_list,
        rows=rows,
        lr_rows=lr_rows,
        table_json=script_json(table_data),
        raw_pretty=positional_json(json.dumps(raw, indent=2, allow_nan=False, ensure_ascii=False))
        if raw is not None
        else None,
    )
