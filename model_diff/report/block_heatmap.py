"""The compare report's blocks x layer-types heatmap (inline SVG, drawn and escaped here).

One row per block in depth order, one column per layer type present in the blocks; a cell's
colour is the average relative change of the block's tensors of that type on a log scale
(``heat``: the timeline heatmap's ramp and legend), hatched when every one of them is frozen
(bit-identical), red with the count when any holds NaN/Inf in the new checkpoint, grey when
none has a defined change. Each cell's hover text (``<title>``) says the value in the words
of ``model_diff.numbers``. Drawn only for models of ``MIN_BLOCKS`` blocks or more (a few
blocks read fine in the depth chart). Names come from checkpoints: every one is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

from ..layers import LAYER_TYPES
from ..name_groups import TYPE_WORDS
from ..terminal import printable
from .charts import Svg, coord
from .formatting import fmt_pct, shorten
from .heat import NAN_FILL, LogScale, frozen_pattern, grid, heat_legend, ramp

if TYPE_CHECKING:
    from ..analysis import DepthEntry

__all__ = ["MIN_BLOCKS", "block_heatmap"]

#: Fewer blocks than this: no heatmap (the depth chart shows them well).
MIN_BLOCKS = 6
FROZEN_ID = "bh-frozen"


def _cell(e: DepthEntry | None, nan: int, scale: LogScale | None) -> tuple[str, str, str]:
    """(CSS class, fill or "", text mark) of one cell."""
    if e is None:
        return "absent", "", ""
    if nan:
        return "nan", NAN_FILL, str(nan)
    if e.count and e.frozen == e.count:
        return "frozen", f"url(#{FROZEN_ID})", ""
    v = e.avg_change
    if v is None or not math.isfinite(v) or scale is None:
        return "none", "", ""
    if v <= 0:
        return "zero", ramp(0.0), ""
    return "value", ramp(scale(v)), ""


def _tip(label: str, t: str, e: DepthEntry | None, nan: int) -> str:
    head = f"{label} · {TYPE_WORDS.get(t, t)}"
    if e is None:
        return f"{head}: no tensor of this type"
    count = e.count or 0
    parts = [f"avg relative change {fmt_pct(e.avg_change)}"]
    if e.measured is not None and e.measured != count:
        parts[0] += f" over {e.measured} of {count} tensors"
    else:
        parts[0] += f" over {count} tensor{'' if count == 1 else 's'}"
    if e.frozen:
        parts.append(f"{e.frozen} frozen (bit-identical)")
    if nan:
        parts.append(f"{nan} with NaN/Inf")
    return f"{head}: " + "; ".join(parts)


def block_heatmap(
    profile: Sequence[DepthEntry], nonfinite: Mapping[tuple[str, str], int], width: int
) -> Markup | None:
    """The heatmap of ``profile`` (the analysis's depth profile); ``nonfinite`` counts the
    tensors with NaN/Inf per (block label, layer type). None below ``MIN_BLOCKS`` blocks."""
    blocks: dict[int, str] = {e.block: e.label for e in profile}
    if len(blocks) < MIN_BLOCKS:
        return None
    present = {e.layer_type for e in profile}
    types = [t for t in LAYER_TYPES if t in present] + sorted(present - set(LAYER_TYPES))
    cells = {(e.block, e.layer_type): e for e in profile}
    values = [
        e.avg_change
        for e in profile
        if e.avg_change is not None and math.isfinite(e.avg_change) and e.avg_change > 0
    ]
    scale = LogScale(values) if values else None
    order = sorted(blocks)
    labels = [printable(blocks[b]) for b in order]
    g = grid(
        labels,
        len(types),
        width,
        dense_above=48,
        max_label_w=260,
        cell_w_range=(44.0, 110.0),
        row_heights=(18.0, 10.0),
        top=30.0,
        bottom=64,
    )
    left, top, cell_w, row_h, chars = g.left, g.top, g.cell_w, g.row_h, g.chars
    legend_y, legend_w = g.legend_y, g.legend_w
    svg = Svg(g.width, g.height, "Relative change per block and layer type", "blockheat")
    svg.add(frozen_pattern(FROZEN_ID))
    for k, t in enumerate(types):
        svg.text(
            left + cell_w * (k + 0.5),
            top - 10,
            TYPE_WORDS.get(t, printable(t)),
            anchor="middle",
            cls="tick",
            size=11,
        )
    for j, (b, label) in enumerate(zip(order, labels, strict=True)):
        y = top + row_h * j
        svg.add(
            f'<text x="{coord(left - 8)}" y="{coord(y + row_h / 2 + 4)}" text-anchor="end" '
            f'class="lbl rowlbl{"" if row_h > 10 else " small"}"><title>{escape(label)}'
            f"</title>{escape(shorten(label, chars))}</text>"
        )
        for k, t in enumerate(types):
            x = left + cell_w * k
            e = cells.get((b, t))
            nan = nonfinite.get((blocks[b], t), 0)
            cls, fill, mark = _cell(e, nan, scale)
            fill_attr = f' fill="{fill}"' if fill else ""
            svg.add(
                f'<rect x="{coord(x)}" y="{coord(y)}" width="{coord(cell_w)}" '
                f'height="{coord(row_h)}" class="cell {cls}"{fill_attr} data-block="{b}" '
                f'data-type="{escape(printable(t))}"><title>{escape(_tip(label, t, e, nan))}'
                "</title></rect>"
            )
            if mark and row_h >= 14:
                svg.text(
                    x + cell_w / 2, y + row_h / 2 + 4, mark, anchor="middle", cls="mark", size=10
                )
            elif cls == "nan":
                svg.add(
                    f'<path d="M{coord(x + 3)},{coord(y + 2)} L{coord(x + cell_w - 3)},'
                    f"{coord(y + row_h - 2)} M{coord(x + cell_w - 3)},{coord(y + 2)} "
                    f'L{coord(x + 3)},{coord(y + row_h - 2)}" class="nan-mark"/>'
                )
    heat_legend(svg, scale, left, legend_y, legend_w, FROZEN_ID)
    return svg.done()
