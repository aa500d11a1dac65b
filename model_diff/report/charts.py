"""Inline SVG charts for the HTML report, drawn here in Python (no JavaScript, no CDN).

Each function returns an SVG document fragment as ``markupsafe.Markup``; every piece of text
in it (tensor names, layer types, labels) is escaped here, numbers are formatted with fixed
precision so the markup is byte-identical across runs. Colours come from CSS classes the
template defines per colour scheme. A chart with nothing to draw returns None and the
template says why. This module must not embed data for scripts (the template does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

from ..diff import ParameterDiff
from ..layers import LAYER_TYPES
from ..terminal import printable
from .formatting import fmt_int, fmt_pct

if TYPE_CHECKING:
    from ..analysis import DepthEntry, LayerStats

_FONT = 12
#: Widest advance of a digit, separator, "%" or "x" at 12px in the sans-serif fonts the page
#: names, in CSS px (a digit is ~6.7px; "%" up to 10.7px): what a tick label is sized with.
_CHAR_W = 7.2
_PCT_W = 11.0


def _f(x: float) -> str:
    """Coordinates with one decimal: stable text, sub-pixel precision."""
    s = f"{x:.1f}"
    return "0.0" if s == "-0.0" else s


def _nice_max(v: float) -> tuple[float, float]:
    """A round axis maximum >= v and its tick step (1, 2, 2.5 or 5 times a power of ten),
    with at most five steps, as tight above ``v`` as those steps allow."""
    if v <= 0 or not math.isfinite(v):
        return 1.0, 0.25
    exp = math.floor(math.log10(v / 5))
    for m in (1, 2, 2.5, 5, 10):
        step = m * 10.0**exp
        n = math.ceil(v / step - 1e-9)
        if n <= 5:
            return step * n, step
    return v, v / 5  # unreachable: m=10 gives n <= 5


def _series_class(layer_type: str) -> str:
    return f"s-{layer_type}" if layer_type in LAYER_TYPES else "s-other"


class _Svg:
    def __init__(self, width: int, height: int, label: str, cls: str) -> None:
        self.w, self.h = width, height
        self.parts: list[str] = [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {cls}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(label)}">'
        ]

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        anchor: str = "start",
        cls: str = "lbl",
        size: int = _FONT,
    ) -> None:
        self.add(
            f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" class="{cls}" '
            f'font-size="{size}">{escape(text)}</text>'
        )

    def done(self) -> Markup:
        return Markup("".join([*self.parts, "</svg>"]))  # noqa: S704 - every text escaped above


def label_width(text: str, size: int = _FONT) -> float:
    """An upper bound of ``text``'s rendered width at ``size`` px (tick labels: digits,
    separators, "%", "x", "×10ⁿ")."""
    return sum(_PCT_W if ch in "%×" else _CHAR_W for ch in text) * size / _FONT


def _tick_values(vmax: float, step: float) -> list[float]:
    return [step * i for i in range(round(vmax / step) + 1)]


def axis_room(labels: Sequence[str], least: float, size: int = _FONT) -> float:
    """The left margin a y axis needs so its widest tick label (drawn 6px left of the axis,
    right-aligned) stays inside the chart with 8px to spare; at least ``least``."""
    widest = max((label_width(t, size) for t in labels), default=0.0)
    return max(least, float(math.ceil(widest + 6 + 8)))


def _y_axis(
    svg: _Svg,
    *,
    left: float,
    top: float,
    bottom: float,
    right: float,
    vmax: float,
    step: float,
    label: Any = fmt_pct,
) -> None:
    for v in _tick_values(vmax, step):
        y = bottom - (bottom - top) * v / vmax
        svg.add(f'<line x1="{_f(left)}" y1="{_f(y)}" x2="{_f(right)}" y2="{_f(y)}" class="grid"/>')
        svg.text(left - 6, y + 4, label(v), anchor="end", cls="tick")


def count_axis(
    svg: _Svg, largest: int, *, width: int, top: float, bottom: float
) -> tuple[float, float, float]:
    """A y axis of whole counts from 0 to a round maximum at or above ``largest``, its left
    margin sized to the widest label; returns (left, right, vmax) of the plot area."""
    vmax, step = _nice_max(largest)
    step = max(step, 1.0)
    vmax = max(vmax, step)
    left = axis_room([fmt_int(round(v)) for v in _tick_values(vmax, step)], least=56.0)
    right = width - 16.0
    _y_axis(
        svg,
        left=left,
        top=top,
        bottom=bottom,
        right=right,
        vmax=vmax,
        step=step,
        label=lambda v: fmt_int(round(v)),
    )
    return left, right, vmax


def depth_chart(profile: Sequence[DepthEntry], width: int, height: int) -> Markup | None:
    """Relative change per block, one line per layer type (cells without a defined change
    are left out: nothing is drawn at 0 that was not measured at 0)."""
    pts: dict[str, list[tuple[int, float, int]]] = {}
    for p in profile:
        if p.avg_change is None or not math.isfinite(p.avg_change):
            continue
        pts.setdefault(p.layer_type, []).append((p.block, p.avg_change, p.count or 0))
    if not pts:
        return None
    types = [t for t in LAYER_TYPES if t in pts] + sorted(t for t in pts if t not in LAYER_TYPES)
    blocks = sorted({b for v in pts.values() for b, _, _ in v})
    vmax, step = _nice_max(max(v for s in pts.values() for _, v, _ in s))
    room = axis_room([fmt_pct(v) for v in _tick_values(vmax, step)], least=64.0)
    left, right, top, bottom = room, width - 16.0, 34.0, height - 40.0
    svg = _Svg(width, height, "Relative change by depth per layer type", "depth")
    _y_axis(svg, left=left, top=top, bottom=bottom, right=right, vmax=vmax, step=step)
    b0, b1 = blocks[0], blocks[-1]

    inset = 14.0  # keep the first and last points off the axis lines

    def x_of(b: int) -> float:
        if b1 == b0:
            return (left + right) / 2
        return left + inset + (right - left - 2 * inset) * (b - b0) / (b1 - b0)

    stride = max(1, math.ceil(len(blocks) / max(1, int((right - left) // 36))))
    for i, b in enumerate(blocks):
        if i % stride == 0 or b == b1:
            svg.text(x_of(b), bottom + 16, str(b), anchor="middle", cls="tick")
    svg.text((left + right) / 2, height - 6, "block (depth)", anchor="middle", cls="axis")
    svg.text(12, top - 14, "relative change", cls="axis")
    svg.add(
        f'<line x1="{_f(left)}" y1="{_f(bottom)}" x2="{_f(right)}" y2="{_f(bottom)}" '
        f'class="axis-line"/>'
    )
    for t in types:
        series = sorted(pts[t])
        cls = _series_class(t)
        coords = [(x_of(b), bottom - (bottom - top) * v / vmax) for b, v, _ in series]
        if len(coords) > 1:
            d = " ".join(f"{_f(x)},{_f(y)}" for x, y in coords)
            svg.add(f'<polyline points="{d}" class="line {cls}" fill="none"/>')
        for (x, y), (b, v, c) in zip(coords, series, strict=True):
            tip = f"{printable(t)}, block {b}: {fmt_pct(v)}"
            if c:
                tip += f" ({c} tensors)"
            svg.add(
                f'<circle cx="{_f(x)}" cy="{_f(y)}" r="3.5" class="dot {cls}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    # Legend, right-aligned on the top margin.
    x = right
    for t in reversed(types):
        label = printable(t)
        w = 18 + 7 * len(label)
        x -= w
        svg.add(
            f'<rect x="{_f(x)}" y="{_f(top - 24)}" width="10" height="10" rx="2" '
            f'class="swatch {_series_class(t)}"/>'
        )
        svg.text(x + 14, top - 15, label, cls="legend")
        x -= 8
    return svg.done()


def layer_type_chart(rows: Sequence[LayerStats], width: int, height: int) -> Markup | None:
    """Per layer type: tensors changed vs frozen (left), average and max change (right)."""
    rows = [r for r in rows if r.count]
    if not rows:
        return None
    svg = _Svg(width, height, "Layer-type breakdown", "layers")
    label_w = 92.0
    top, bottom = 40.0, height - 16.0
    mid = label_w + (width - label_w) * 0.45
    l0, l1 = label_w, mid - 24
    r0, r1 = mid + 8, width - 16.0
    band = (bottom - top) / len(rows)
    bar = min(26.0, band * 0.62)
    cmax = max(r.count or 0 for r in rows)
    vmax, _ = _nice_max(max((r.max_change or r.avg_change or 0.0) for r in rows))
    svg.text(l0, top - 22, "tensors: changed / frozen", cls="axis")
    svg.text(r0, top - 22, "relative change: avg (bar), max (tick)", cls="axis")
    for i, r in enumerate(rows):
        y = top + band * i + (band - bar) / 2
        cy = y + bar / 2 + 4
        svg.text(label_w - 8, cy, printable(r.layer_type), anchor="end", cls="lbl")
        count = r.count or 0
        changed = r.changed if r.changed is not None else count - (r.frozen or 0)
        frozen = r.frozen if r.frozen is not None else count - changed
        x = l0
        for value, cls, what in (
            (changed, _series_class(r.layer_type), "changed"),
            (frozen, "frozen", "frozen"),
        ):
            if value <= 0:
                continue
            w = (l1 - l0) * value / cmax
            svg.add(
                f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(bar)}" '
                f'class="bar {cls}"><title>{escape(printable(r.layer_type))}: '
                f"{value} {what}</title></rect>"
            )
            x += w
        svg.text(x + 4, cy, f"{fmt_int(changed)}/{fmt_int(frozen)}", cls="val")
        # No bar where no tensor of the type has a defined change ("n/a", not 0%).
        w = (r1 - r0) * r.avg_change / vmax if r.avg_change is not None else 0.0
        if r.avg_change is not None:
            svg.add(
                f'<rect x="{_f(r0)}" y="{_f(y)}" width="{_f(w)}" height="{_f(bar)}" '
                f'class="bar {_series_class(r.layer_type)} soft"><title>'
                f"{escape(printable(r.layer_type))}: avg {fmt_pct(r.avg_change)}, max "
                f"{fmt_pct(r.max_change)}</title></rect>"
            )
        if r.max_change is not None:
            mx = r0 + (r1 - r0) * r.max_change / vmax
            svg.add(
                f'<line x1="{_f(mx)}" y1="{_f(y - 3)}" x2="{_f(mx)}" y2="{_f(y + bar + 3)}" '
                f'class="maxtick"/>'
            )
        svg.text(
            r0 + w + 6 if w < (r1 - r0) * 0.7 else r0 + 6, cy, fmt_pct(r.avg_change), cls="val"
        )
    return svg.done()


#: Histogram bins on 1 - cosine (fine-tunes live at 0.9999x; a linear axis shows one bar).
_COS_BINS: tuple[tuple[float, float, str], ...] = (
    (-math.inf, 1e-6, "≥ 0.999999"),
    (1e-6, 1e-5, "≥ 0.99999"),
    (1e-5, 1e-4, "≥ 0.9999"),
    (1e-4, 1e-3, "≥ 0.999"),
    (1e-3, 1e-2, "≥ 0.99"),
    (1e-2, 1e-1, "≥ 0.9"),
    (1e-1, 1.0, "0 – 0.9"),
    (1.0, math.inf, "< 0"),
)


def cosine_histogram(diffs: Sequence[ParameterDiff], width: int, height: int) -> Markup | None:
    """How many changed tensors fall in each cosine-similarity band (log scale on 1 - cos)."""
    values = [
        d.cosine_sim
        for d in diffs
        if d.is_changed and d.cosine_sim is not None and math.isfinite(d.cosine_sim)
    ]
    if not values:
        return None
    counts = [0] * len(_COS_BINS)
    for c in values:
        gap = 1.0 - c
        for i, (lo, hi, _) in enumerate(_COS_BINS):
            if lo < gap <= hi or (i == 0 and gap <= hi):
                counts[i] += 1
                break
    svg = _Svg(width, height, "Cosine similarity distribution of changed tensors", "cosine")
    top, bottom = 30.0, height - 44.0
    left, right, vmax = count_axis(svg, max(counts), width=width, top=top, bottom=bottom)
    slot = (right - left) / len(_COS_BINS)
    for i, ((lo, _hi, label), n) in enumerate(zip(_COS_BINS, counts, strict=True)):
        h = (bottom - top) * n / vmax
        x = left + slot * i + slot * 0.15
        cls = "bar hist" + (" warn" if lo >= 1e-1 else "")
        svg.add(
            f'<rect x="{_f(x)}" y="{_f(bottom - h)}" width="{_f(slot * 0.7)}" '
            f'height="{_f(h)}" class="{cls}"><title>{escape(label)}: {n} tensors'
            "</title></rect>"
        )
        if n:
            svg.text(x + slot * 0.35, bottom - h - 5, fmt_int(n), anchor="middle", cls="val")
        svg.text(x + slot * 0.35, bottom + 16, label, anchor="middle", cls="tick")
    svg.text(
        (left + right) / 2,
        height - 8,
        "cosine similarity (bands of 1 - cos, log scale)",
        anchor="middle",
        cls="axis",
    )
    svg.text(12, top - 12, "tensors", cls="axis")
    return svg.done()


#: Keys a per-tensor low-rank record may use for the ranks capturing 90% / 99% of the energy.
_R90 = ("rank_90", "rank90", "energy_rank_90", "r90")
_R99 = ("rank_99", "rank99", "energy_rank_99", "r99")
_FULL = ("full_rank", "max_rank", "rank_max")


def _pick(d: dict[str, Any], keys: Sequence[str]) -> float | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def low_rank_rows(diffs: Sequence[ParameterDiff]) -> list[dict[str, Any]]:
    """(name, r90, r99, effective rank, full rank) per tensor with a low-rank record."""
    rows = []
    for d in diffs:
        lr = d.low_rank
        if not lr:
            continue
        shape = d.new_shape or d.old_shape or ()
        full = _pick(lr, _FULL) or (float(min(shape)) if len(shape) == 2 else None)
        rows.append(
            {
                "name": d.name,
                "r90": _pick(lr, _R90),
                "r99": _pick(lr, _R99),
                "effective": _pick(lr, ("effective_rank",)),
                "full": full,
                "limit": _pick(lr, ("rank_limit",)),
            }
        )
    return rows


def low_rank_chart(
    rows: Sequence[dict[str, Any]], width: int, height: int, limit: int = 16
) -> Markup | None:
    """Rank capturing 90% (dark) and 99% (light) of each delta's energy, vs the full rank."""
    rows = [r for r in rows if r["full"] and (r["r90"] is not None or r["r99"] is not None)]
    if not rows:
        return None
    # The lowest-rank deltas are the interesting ones (extractable as a small LoRA).
    rows = sorted(rows, key=lambda r: ((r["r90"] or r["r99"] or 0) / r["full"], r["name"]))
    rows = rows[:limit]
    svg = _Svg(width, height, "Low-rank structure of weight deltas", "lowrank")
    label_w = min(320.0, width * 0.42)
    top, bottom, right = 36.0, height - 12.0, width - 70.0
    band = (bottom - top) / len(rows)
    bar = min(18.0, band * 0.7)
    svg.text(
        label_w, top - 16, "rank for 90% / 99% of the delta's energy, of full rank", cls="axis"
    )
    chars = int(label_w // 7)
    for i, r in enumerate(rows):
        y = top + band * i + (band - bar) / 2
        name = printable(r["name"])
        short = name if len(name) <= chars else "…" + name[-(chars - 1) :]
        svg.add(
            f'<text x="{_f(label_w - 8)}" y="{_f(y + bar / 2 + 4)}" text-anchor="end" '
            f'class="lbl mono" font-size="11"><title>{escape(name)}</title>'
            f"{escape(short)}</text>"
        )
        full = r["full"]
        svg.add(
            f'<rect x="{_f(label_w)}" y="{_f(y)}" width="{_f(right - label_w)}" '
            f'height="{_f(bar)}" class="bar track"/>'
        )
        for key, cls in (("r99", "r99"), ("r90", "r90")):
            if r[key] is None:
                continue
            w = (right - label_w) * min(r[key], full) / full
            svg.add(
                f'<rect x="{_f(label_w)}" y="{_f(y)}" width="{_f(w)}" height="{_f(bar)}" '
                f'class="bar {cls}"><title>{escape(name)}: {key[1:]}% energy at rank '
                f"{int(r[key])} of {int(full)}</title></rect>"
            )
        # None: the rank lies beyond what the bounded-cost method resolved (rank_limit).
        beyond = f">{int(r['limit'])}" if r.get("limit") else "?"
        r90 = beyond if r["r90"] is None else str(int(r["r90"]))
        r99 = beyond if r["r99"] is None else str(int(r["r99"]))
        svg.text(right + 6, y + bar / 2 + 4, f"{r90}/{r99} of {int(full)}", cls="val", size=11)
    return svg.done()


# Public names of the drawing helpers, shared with the three-way, timeline and heatmap
# charts; the private spellings stay for this module's own use.
Svg = _Svg
y_axis = _y_axis
coord = _f
