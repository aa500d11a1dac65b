"""One row per tensor as the analysis sees it, and the aggregates built from rows.

``make_rows(diffs, classifier)`` gives each ``ParameterDiff`` its layer type, block and the
numbers aggregates need; ``aggregate_change(rows)`` is sqrt(sum ||delta||^2 / sum ||old||^2)
over them. The analyzer (``model_diff.analysis``), its insights and patterns and the
training timeline (``model_diff.timeline``) all build on these, so they agree on what a
block's or a layer type's change is.

Undefined numbers stay None (never 0): an aggregate over nothing is None. This module reads
results only; it must not load tensors, print, or import click/torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from . import layers
from .diff import ChangeType, ParameterDiff

__all__ = ["COMPARED", "Row", "aggregate_change", "make_rows", "mean"]

#: Change types whose two sides were compared element-wise (metrics may be defined).
COMPARED = (
    ChangeType.MODIFIED,
    ChangeType.UNCHANGED,
    ChangeType.DTYPE_CHANGED,
    ChangeType.SHAPE_CHANGED,
)


@dataclass(frozen=True)
class Row:
    """One tensor as the analysis sees it."""

    diff: ParameterDiff
    layer_type: str
    block: layers.BlockInfo | None
    #: relative change (0.0 for an exactly unchanged tensor); None where undefined and for
    #: buffers (not trained: in no average, aggregate or metric insight)
    change: float | None
    #: ||new-old||^2 and ||old||^2 for aggregates; None where unknown
    d2: float | None
    o2: float | None
    #: a non-trainable buffer (``layers.is_buffer``): never "frozen"
    buffer: bool = False

    @property
    def name(self) -> str:
        return self.diff.name

    @property
    def unit(self) -> str:
        """The block's label, or the layer type for a tensor outside blocks."""
        return self.block.label if self.block is not None else f"{self.layer_type} (outside blocks)"


def make_rows(diffs: Sequence[ParameterDiff], classifier: layers.LayerClassifier) -> list[Row]:
    """A ``Row`` per diff, in the order given; blocks laid out over all of ``diffs``."""
    layout = layers.block_layout(d.name for d in diffs)
    rows = []
    for d in diffs:
        pos = layers.block_position(d.name)
        block = layout.get(pos.label) if pos is not None else None
        change: float | None = None
        d2: float | None = None
        o2: float | None = None
        buffer = layers.is_buffer(d.name, d.new_dtype or d.old_dtype)
        if buffer:
            pass  # not trained: no change to measure, in no average or aggregate
        elif d.change_type is ChangeType.UNCHANGED:
            change, d2 = 0.0, 0.0
        elif (
            d.change_type in COMPARED
            and d.relative_change is not None
            and math.isfinite(d.relative_change)
        ):
            change = d.relative_change
        measured = d.change_type in COMPARED and not buffer
        if measured and d.l2_diff is not None and math.isfinite(d.l2_diff):
            d2 = d.l2_diff**2
        if measured and d.old_norm is not None and math.isfinite(d.old_norm):
            o2 = d.old_norm**2
        rows.append(Row(d, classifier.layer_type(d.name), block, change, d2, o2, buffer))
    return rows


def aggregate_change(rows: Sequence[Row]) -> float | None:
    """sqrt(sum ||delta||^2 / sum ||old||^2) over rows with both known; None if none."""
    num = math.fsum(r.d2 for r in rows if r.d2 is not None and r.o2 is not None)
    den = math.fsum(r.o2 for r in rows if r.d2 is not None and r.o2 is not None)
    if den <= 0:
        return None
    return math.sqrt(num / den)


def mean(values: Sequence[float]) -> float | None:
    """The mean, or None for no values (never 0)."""
    return math.fsum(values) / len(values) if values else None
