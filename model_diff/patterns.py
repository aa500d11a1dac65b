"""The change pattern of a checkpoint pair: uniform, gradient, focused, sparse, ...

``classify_pattern(rows, summary, total)`` applies the rules below in order, over every
tensor (unchanged ones included), with thresholds relative to this pair and depth measured
in blocks; it returns the pattern and the numbers that decided it. ``describe_pattern`` puts
the deciding number in words. The rules are documented in the README ("Analysis and
insights") and each is pinned by a test. This module reads results only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import layers
from .diff import DiffSummary
from .findings import describe_names
from .naming import natural_sorted
from .numbers import fmt_float, fmt_fold
from .rows import Row, aggregate_change, mean

__all__ = [
    "NOT_ANALYZED",
    "NO_CHANGE",
    "PATTERNS",
    "classify_pattern",
    "describe_pattern",
]

PATTERNS: tuple[str, ...] = (
    "uniform",
    "gradient",
    "inverse_gradient",
    "focused",
    "sparse",
    "attention_heavy",
    "mlp_heavy",
    "embedding_heavy",
)
#: Extra values of ``change_pattern``: nothing changed / patterns switched off or unmeasurable.
NO_CHANGE = "no_change"
NOT_ANALYZED = "not_analyzed"

# -- pattern rules (relative to the pair; see README "Analysis and insights") ---------------
#: A tensor's change is significant when >= this fraction of the pair's reference change
#: (the median of the changed tensors' relative changes: robust to the few small tensors,
#: biases and norms, whose relative changes run far above the weight matrices').
SIGNIFICANT_FRACTION = 0.1
#: sparse: at most this fraction of all tensors changed significantly.
SPARSE_FRACTION = 0.1
#: focused: significant changes sit in at most a quarter of the units (blocks, plus one unit
#: per layer type outside blocks), and fill at least half of the tensors of those units.
FOCUSED_UNIT_FRACTION = 0.25
FOCUSED_FILL = 0.5
#: *_heavy: one layer type's aggregate change is at least this multiple of the other's.
HEAVY_RATIO = 2.0
#: gradient / inverse_gradient: early vs late half's aggregate change ratio.
GRADIENT_RATIO = 1.5
#: uniform: coefficient of variation of the blocks' aggregate changes at most this.
UNIFORM_CV = 0.5

_PATTERN_TEXT = {
    "uniform": "All blocks changed by a similar amount",
    "gradient": "Earlier blocks changed more than later blocks",
    "inverse_gradient": "Later blocks changed more than earlier blocks",
    "focused": "The change is concentrated in a few blocks or layers",
    "sparse": "Only a few isolated tensors changed significantly",
    "attention_heavy": "Attention layers changed much more than MLP layers",
    "mlp_heavy": "MLP (feed-forward) layers changed much more than attention layers",
    "embedding_heavy": "Embeddings changed much more than the rest of the model",
}


def describe_pattern(pattern: str, ev: Mapping[str, Any], summary: DiffSummary) -> str:
    """The pattern and its deciding number, in words (the evidence keeps it unrounded)."""
    return _PATTERN_TEXT[pattern] + _detail(pattern, ev, summary)


def _detail(pattern: str, ev: Mapping[str, Any], summary: DiffSummary) -> str:

    def ratio(key: str) -> str:
        v = ev.get(key)
        return "without bound" if v is None else fmt_fold(v)

    if pattern in ("gradient", "inverse_gradient"):
        return f" (later half of the blocks vs earlier half: {ratio('late_vs_early')})"
    if pattern in ("attention_heavy", "mlp_heavy"):
        return f" (attention vs MLP: {ratio('attention_vs_mlp')})"
    if pattern == "embedding_heavy":
        return f" (embeddings vs the rest: {ratio('embedding_vs_rest')})"
    if pattern == "sparse":
        return (
            f" ({ev.get('significant_tensors')} of "
            f"{max(summary.total_parameters, 1)} tensors changed significantly)"
        )
    if pattern == "focused":
        return f" ({describe_names(list(ev.get('units_hit') or []))})"
    if pattern == "uniform":
        cv = ev.get("block_change_cv", 0.0)
        return f" (spread of block changes: coefficient of variation {fmt_float(cv)})"
    return ""


# -- patterns ------------------------------------------------------------------------------
def classify_pattern(
    rows: Sequence[Row], summary: DiffSummary, total: int
) -> tuple[str, dict[str, Any]]:
    """The change pattern of a pair and the numbers that decided it (rules in order)."""
    if summary.changed_parameters == 0 and not any(r.diff.is_changed for r in rows):
        return NO_CHANGE, {}
    changed = [
        r.change for r in rows if r.diff.is_changed and r.change is not None and r.change > 0
    ]
    if not changed:
        return NOT_ANALYZED, {"reason": "no changed tensor has a defined relative change"}
    reference = _percentile(changed, 0.5)
    cut = SIGNIFICANT_FRACTION * reference
    sig = [r for r in rows if r.change is not None and r.change > 0 and r.change >= cut]
    sig_fraction = len(sig) / total if total else 0.0
    by_type: dict[str, list[Row]] = {}
    for r in rows:
        by_type.setdefault(r.layer_type, []).append(r)
    agg = {t: aggregate_change(rs) for t, rs in by_type.items()}
    ev: dict[str, Any] = {
        "reference_change": reference,
        "significant_cut": cut,
        "significant_tensors": len(sig),
        "significant_fraction": sig_fraction,
        "type_aggregate_change": {t: agg[t] for t in sorted(agg)},
    }

    # 1. embedding_heavy
    emb = agg.get(layers.EMBEDDING)
    rest = aggregate_change([r for r in rows if r.layer_type != layers.EMBEDDING])
    if emb and emb > 0 and (not rest or emb >= HEAVY_RATIO * rest):
        ev["embedding_vs_rest"] = emb / rest if rest else None
        return "embedding_heavy", ev

    # 2. focused: whole units (blocks / non-block layer types) hold every significant change
    units: dict[str, list[Row]] = {}
    for r in rows:
        units.setdefault(r.unit, []).append(r)
    hit = natural_sorted({r.unit for r in sig})
    hit_rows = [r for u in hit for r in units[u]]
    sig_ids = {id(r) for r in sig}
    fill = sum(1 for r in hit_rows if id(r) in sig_ids) / len(hit_rows) if hit_rows else 0.0
    limit = max(1, math.floor(FOCUSED_UNIT_FRACTION * len(units)))
    ev.update(units=len(units), units_hit=hit, unit_fill=fill)
    if hit and len(hit) <= limit and fill >= FOCUSED_FILL:
        return "focused", ev

    # 3. sparse
    if sig_fraction <= SPARSE_FRACTION:
        return "sparse", ev

    # 4. attention_heavy / mlp_heavy
    att, mlp = agg.get(layers.ATTENTION), agg.get(layers.MLP)
    if att is not None and mlp is not None:
        ev["attention_vs_mlp"] = att / mlp if mlp else None
        if att > 0 and att >= HEAVY_RATIO * mlp:
            return "attention_heavy", ev
        if mlp > 0 and mlp >= HEAVY_RATIO * att:
            return "mlp_heavy", ev

    # 5. depth trend, split on block depth (middle block of an odd stack in neither half)
    blocked = [r for r in rows if r.block is not None]
    early = aggregate_change([r for r in blocked if r.block and r.block.depth < 0.5])
    late = aggregate_change([r for r in blocked if r.block and r.block.depth > 0.5])
    block_aggs = [
        a
        for a in (aggregate_change(rs) for rs in units.values() if rs[0].block is not None)
        if a is not None
    ]
    if early is not None and late is not None:
        ev.update(
            early_change=early, late_change=late, late_vs_early=late / early if early else None
        )
        if late > 0 and late >= GRADIENT_RATIO * early:
            return "inverse_gradient", ev
        if early > 0 and early >= GRADIENT_RATIO * late:
            return "gradient", ev

    # 6. uniform vs focused by the spread of block (or tensor) changes
    spread = (
        block_aggs if len(block_aggs) >= 2 else [r.change for r in rows if r.change is not None]
    )
    avg = mean(spread) or 0.0
    cv = (math.sqrt(mean([(x - avg) ** 2 for x in spread]) or 0.0) / avg) if avg else 0.0
    ev["block_change_cv"] = cv
    return ("uniform" if cv <= UNIFORM_CV else "focused"), ev


def _percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
