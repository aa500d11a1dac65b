"""The heatmaps' colour scale, shared by the compare report (blocks x layer types) and the
timeline report (blocks x steps): a viridis ramp on a log scale, red for NaN/Inf, a hatch
for frozen cells, and the legend that explains them. Numbers in the legend follow
``model_diff.numbers`` (never e-notation). This module draws SVG pieces only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .charts import Svg, coord
from .formatting import fmt_pct

__all__ = [
    "NAN_FILL",
    "RAMP",
    "Grid",
    "LogScale",
    "frozen_pattern",
    "grid",
    "heat_legend",
    "ramp",
]

#: The colour ramp (viridis, low -> high): perceptually even, readable for colour-blind
#: readers, and far from the red that marks NaN/Inf.
RAMP = (
    (0x44, 0x01, 0x54),
    (0x48, 0x28, 0x78),
    (0x3E, 0x49, 0x89),
    (0x31, 0x68, 0x8E),
    (0x26, 0x82, 0x8E),
    (0x1F, 0x9E, 0x89),
    (0x35, 0xB7, 0x79),
    (0x6E, 0xCE, 0x58),
    (0xB5, 0xDE, 0x2B),
    (0xFD, 0xE7, 0x25),
)
NAN_FILL = "#e03131"


@dataclass(frozen=True)
class Grid:
    """Where a heatmap's parts go: row labels left of ``left``, cells of ``cell_w`` x
    ``row_h`` from (``left``, ``top``), the legend at ``legend_y``; ``chars`` is how many
    characters of a row label fit; ``width`` x ``height`` the whole picture."""

    left: float
    top: float
    cell_w: float
    row_h: float
    chars: int
    legend_y: float
    legend_w: float
    width: int
    height: int


def grid(
    labels: Sequence[str],
    columns: int,
    width: int,
    *,
    dense_above: int,
    max_label_w: float,
    cell_w_range: tuple[float, float],
    row_heights: tuple[float, float],
    top: float,
    bottom: float,
) -> Grid:
    """The layout of a heatmap of ``len(labels)`` rows and ``columns`` columns in about
    ``width`` pixels: rows get the smaller height and font once there are more than
    ``dense_above``; the label column is as wide as the longest label (up to
    ``max_label_w``), the cells share the rest within ``cell_w_range``."""
    dense = len(labels) > dense_above
    char_w = 5.7 if dense else 6.9  # monospace at 9.5px / 11.5px (CSS .rowlbl)
    label_w = float(min(max_label_w, 16 + char_w * max(len(x) for x in labels)))
    low, high = cell_w_range
    cell_w = max(low, min(high, (width - label_w - 24) / columns))
    row_h = row_heights[1] if dense else row_heights[0]
    legend_y = top + row_h * len(labels) + 22
    legend_w = max(240.0, min(400.0, cell_w * columns))
    return Grid(
        left=label_w,
        top=top,
        cell_w=cell_w,
        row_h=row_h,
        chars=int((label_w - 16) / char_w + 0.01),
        legend_y=legend_y,
        legend_w=legend_w,
        width=int(max(label_w + cell_w * columns, label_w + legend_w) + 24),
        height=int(legend_y + bottom),
    )


def ramp(t: float) -> str:
    """The ramp's colour at ``t`` in [0, 1] as ``#rrggbb``."""
    t = min(1.0, max(0.0, t)) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    f = t - i
    a, b = RAMP[i], RAMP[i + 1]
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True))


class LogScale:
    """log10 over the finite positive values of a timeline (one decade when all are equal)."""

    def __init__(self, values: Sequence[float]) -> None:
        lo, hi = min(values), max(values)
        self.lo = math.floor(math.log10(lo) * 4) / 4  # quarter decades: round, stable bounds
        self.hi = math.ceil(math.log10(hi) * 4) / 4
        if self.hi - self.lo < 1.0:
            mid = (self.hi + self.lo) / 2
            self.lo, self.hi = mid - 0.5, mid + 0.5

    def __call__(self, v: float) -> float:
        return (math.log10(v) - self.lo) / (self.hi - self.lo)

    def ticks(self) -> list[float]:
        """Powers of ten inside the range (and both ends when fewer than two fit)."""
        out = [10.0**e for e in range(math.ceil(self.lo), math.floor(self.hi) + 1)]
        if len(out) < 2:
            out = sorted({10.0**self.lo, *out, 10.0**self.hi})
        return out


def frozen_pattern(pattern_id: str) -> str:
    """The ``<defs>`` of the diagonal hatch that marks frozen cells (``url(#pattern_id)``)."""
    return (
        f'<defs><pattern id="{pattern_id}" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" class="frozen-bg"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="frozen-line" stroke-width="2"/>'
        "</pattern></defs>"
    )


def heat_legend(
    svg: Svg,
    scale: LogScale | None,
    x0: float,
    y: float,
    width: float,
    frozen_id: str,
    *,
    gap: bool = False,
) -> float:
    """The colour bar with its ticks (``fmt_pct``), and below it the frozen, NaN/Inf (and
    gap) swatches; returns the x where a caller's next swatch may go (at ``y + 42``)."""
    if scale is not None:
        n = 48
        for i in range(n):
            svg.add(
                f'<rect x="{coord(x0 + width * i / n)}" y="{coord(y)}" '
                f'width="{coord(width / n + 0.5)}" height="10" fill="{ramp(i / (n - 1))}"/>'
            )
        for v in scale.ticks():
            x = x0 + width * scale(v)
            svg.add(
                f'<line x1="{coord(x)}" y1="{coord(y + 10)}" x2="{coord(x)}" y2="{coord(y + 14)}" '
                f'class="axis-line"/>'
            )
            svg.text(x, y + 26, fmt_pct(v), anchor="middle", cls="tick", size=10)
    sx, y = x0, y + 42
    swatches: Sequence[tuple[str, str, str]] = (
        ("frozen", f"url(#{frozen_id})", "frozen"),
        ("nan", NAN_FILL, "NaN/Inf"),
        *((("gap", "", "gap"),) if gap else ()),
    )
    for cls, fill, label in swatches:
        fill_attr = f' fill="{fill}"' if fill else ""
        svg.add(
            f'<rect x="{coord(sx)}" y="{coord(y)}" width="14" height="10" '
            f'class="cell {cls}"{fill_attr}/>'
        )
        svg.text(sx + 18, y + 9, label, cls="legend", size=11)
        sx += 26 + 7 * len(label)
    return sx
