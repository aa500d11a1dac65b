"""DiffAnalyzer: turns per-tensor diffs into layer analysis, a change pattern and insights.

``DiffAnalyzer(AnalysisConfig(...)).analyze(diffs, summary) -> dict`` keeps the original
API's return shape (``change_pattern``, ``layer_analysis[type]["count"/"avg_change"]``,
``insights`` with ``severity``/``title``/``description``) and adds stable insight ``code``s,
``category``, ``evidence``, a per-block ``depth_profile``, ``frozen_layers``, a ``low_rank``
summary and ``stats``. The codes are documented in docs/insights.md; policies refer to them.

Rules kept here: undefined metrics (None) are skipped and counted, never averaged in; change
patterns are computed over every tensor, unchanged ones included, with thresholds relative to
this checkpoint pair and depth measured in blocks; floats stay unrounded in the dict (only
the human-readable ``description`` strings round). Output order is deterministic.

This module reads results only: it must not load tensors (except the optional tied-weight
confirmation, which hashes two candidate tensors), print, or import click/torch.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from . import layers
from .diff import ChangeType, DiffConfig, DiffSummary, ParameterDiff, summarize
from .naming import natural_key, natural_sorted
from .quantization import CODES as QUANTIZATION_CODES
from .quantization import TRAINING_CODES, analyze_quantization

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

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

SEVERITIES = ("critical", "warning", "info")

#: Every insight code this module emits (documented in docs/insights.md; policies use them).
INSIGHT_CODES: tuple[str, ...] = (
    "nonfinite-values",
    "frozen-layers",
    "no-change",
    "architecture-changed",
    "shape-changed",
    "dtype-changed",
    "low-cosine",
    "large-relative-change",
    "norm-explosion",
    "norm-collapse",
    "sign-flips",
    "low-rank-delta",
    "tied-weights",
    "change-pattern",
    *QUANTIZATION_CODES,
)

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
#: sign-flips insight: fraction of elements whose sign flipped.
SIGN_FLIP_WARN = 0.25
#: low-rank-delta insight: the delta's 99%-energy rank is at most this fraction of min(m, n).
LOW_RANK_FRACTION = 0.25

_DESCRIBE_MAX = 8  # names spelled out in a description; evidence always lists them all


@dataclass
class AnalysisConfig:
    """Options of the analysis; every field changes the result (README "Analysis and insights").

    ``significant_change_threshold``: a tensor whose relative change ||new-old||/||old|| is at
    least this gets a ``large-relative-change`` insight. ``layer_patterns``: {type: regex}
    overrides searched in each tensor name before the built-in rules (first match wins; types
    stay exclusive). ``analyze_training_dynamics``: classify the change pattern and build the
    depth profile (False: ``change_pattern`` is "not_analyzed", no profile, no
    ``change-pattern`` insight). ``low_cosine_threshold``: modified tensors with a cosine
    similarity below it get ``low-cosine``. ``norm_ratio_threshold``: new/old norm ratio at or
    above it is ``norm-explosion``, at or below its inverse ``norm-collapse``.
    """

    significant_change_threshold: float = 0.1
    layer_patterns: dict[str, str] = field(default_factory=dict)
    analyze_training_dynamics: bool = True
    low_cosine_threshold: float = 0.9
    norm_ratio_threshold: float = 2.0

    def __post_init__(self) -> None:
        t = self.significant_change_threshold
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError("significant_change_threshold must be a number > 0")
        c = self.low_cosine_threshold
        if not (isinstance(c, (int, float)) and -1.0 <= c <= 1.0):
            raise ValueError("low_cosine_threshold must be a number in [-1, 1]")
        r = self.norm_ratio_threshold
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 1.0):
            raise ValueError("norm_ratio_threshold must be a number > 1")
        if not isinstance(self.layer_patterns, Mapping):
            raise ValueError("layer_patterns must be a dict {layer_type: regex}")
        layers.LayerClassifier(self.layer_patterns)  # validates every regex now

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _Row:
    """One tensor as the analysis sees it."""

    diff: ParameterDiff
    layer_type: str
    block: layers.BlockInfo | None
    #: relative change (0.0 for an exactly unchanged tensor); None where undefined
    change: float | None
    #: ||new-old||^2 and ||old||^2 for aggregates; None where unknown
    d2: float | None
    o2: float | None

    @property
    def name(self) -> str:
        return self.diff.name

    @property
    def unit(self) -> str:
        return self.block.label if self.block is not None else f"{self.layer_type} (outside blocks)"


_COMPARED = (
    ChangeType.MODIFIED,
    ChangeType.UNCHANGED,
    ChangeType.DTYPE_CHANGED,
    ChangeType.SHAPE_CHANGED,
)


def _make_rows(diffs: Sequence[ParameterDiff], classifier: layers.LayerClassifier) -> list[_Row]:
    layout = layers.block_layout(d.name for d in diffs)
    rows = []
    for d in diffs:
        pos = layers.block_position(d.name)
        block = layout.get(pos.label) if pos is not None else None
        change: float | None = None
        d2: float | None = None
        o2: float | None = None
        if d.change_type is ChangeType.UNCHANGED:
            change, d2 = 0.0, 0.0
        elif (
            d.change_type in _COMPARED
            and d.relative_change is not None
            and math.isfinite(d.relative_change)
        ):
            change = d.relative_change
        if d.change_type in _COMPARED and d.l2_diff is not None and math.isfinite(d.l2_diff):
            d2 = d.l2_diff**2
        if d.change_type in _COMPARED and d.old_norm is not None and math.isfinite(d.old_norm):
            o2 = d.old_norm**2
        rows.append(_Row(d, classifier.layer_type(d.name), block, change, d2, o2))
    return rows


def _aggregate(rows: Sequence[_Row]) -> float | None:
    """sqrt(sum ||delta||^2 / sum ||old||^2) over rows with both known; None if none."""
    num = math.fsum(r.d2 for r in rows if r.d2 is not None and r.o2 is not None)
    den = math.fsum(r.o2 for r in rows if r.d2 is not None and r.o2 is not None)
    if den <= 0:
        return None
    return math.sqrt(num / den)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_DESCRIBE_MAX])
    more = len(names) - _DESCRIBE_MAX
    return f"{shown} and {more} more" if more > 0 else shown


def _insight(
    code: str,
    severity: str,
    category: str,
    title: str,
    description: str,
    evidence: dict[str, Any],
) -> dict[str, Any]:
    return {
        "code": code,
        "severity": severity,
        "category": category,
        "title": title,
        "description": description,
        "evidence": evidence,
    }


class DiffAnalyzer:
    """Analyses the result of ``ModelDiff.diff`` (pass diffs with unchanged tensors included)."""

    def __init__(self, config: AnalysisConfig | None = None) -> None:
        self.config = config or AnalysisConfig()
        self.classifier = layers.LayerClassifier(self.config.layer_patterns)

    def analyze(
        self,
        diffs: Sequence[ParameterDiff],
        summary: DiffSummary | None = None,
        *,
        old: Checkpoint | None = None,
        new: Checkpoint | None = None,
    ) -> dict[str, Any]:
        """The analysis dict (see docs/INTERNALS.md "Analysis").

        ``old``/``new`` (optional, still open) let the tied-weight check confirm candidates by
        comparing bytes; without them candidates are reported from identical statistics.
        """
        if summary is None:
            summary = summarize(list(diffs), DiffConfig())
        # A diff made with include_unchanged=False (the original API's default) still names
        # its frozen tensors: the summary keeps their records.
        listed = {d.name for d in diffs}
        extra = [d for d in summary.unchanged_diffs if d.name not in listed]
        diffs = sorted([*diffs, *extra], key=lambda d: natural_key(d.name))
        rows = _make_rows(diffs, self.classifier)
        listed_unchanged = sum(1 for d in diffs if d.change_type is ChangeType.UNCHANGED)
        missing_unchanged = max(0, summary.unchanged_parameters - listed_unchanged)
        total = max(summary.total_parameters, len(diffs))
        undefined = {
            "relative_change": sum(
                1 for r in rows if r.diff.change_type in _COMPARED and r.change is None
            ),
            "cosine_sim": sum(
                1
                for r in rows
                if r.diff.change_type in _COMPARED
                and r.diff.change_type is not ChangeType.UNCHANGED
                and r.diff.cosine_sim is None
            ),
        }
        frozen = [r.name for r in rows if r.diff.change_type is ChangeType.UNCHANGED]
        result: dict[str, Any] = {
            "change_pattern": NOT_ANALYZED,
            "pattern_evidence": {},
            "layer_analysis": self._layer_analysis(rows),
            "depth_profile": [],
            "insights": [],
            "frozen_layers": frozen,
            "low_rank": _low_rank_summary(rows),
            "tied_weights": [],
            "stats": {
                "tensors": total,
                "listed": len(diffs),
                "changed": summary.changed_parameters,
                "unchanged": summary.unchanged_parameters,
                "unchanged_listed": missing_unchanged == 0,
                "unchanged_missing": missing_unchanged,
                "undefined_metrics": undefined,
            },
            "config": self.config.to_dict(),
        }
        if self.config.analyze_training_dynamics:
            pattern, evidence = classify_pattern(rows, summary, total)
            result["change_pattern"] = pattern
            result["pattern_evidence"] = evidence
            result["depth_profile"] = _depth_profile(rows)
        tied = find_tied_candidates(rows, old, new)
        result["tied_weights"] = tied
        insights = self._insights(rows, summary, result, missing_unchanged, tied)
        # -- quantization (model_diff.quantization): a quantized side is never judged as
        # training; its section and insights replace the training ones.
        quantization = analyze_quantization(diffs, summary, self.classifier.layer_type)
        if quantization is not None:
            result["quantization"], quant_insights = quantization
            insights = [i for i in insights if i["code"] not in TRAINING_CODES] + quant_insights
            result["change_pattern"] = NOT_ANALYZED
            result["pattern_evidence"] = {"reason": "one side is a quantization of the other"}
            result["frozen_layers"] = []
        # -- end quantization
        order = {s: i for i, s in enumerate(SEVERITIES)}
        insights.sort(key=lambda i: (order[i["severity"]], i["code"], i["title"]))
        result["insights"] = insights
        return result

    # -- layer analysis ---------------------------------------------------------------
    def _layer_analysis(self, rows: Sequence[_Row]) -> dict[str, dict[str, Any]]:
        by_type: dict[str, list[_Row]] = {}
        for r in rows:
            by_type.setdefault(r.layer_type, []).append(r)
        order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}
        out: dict[str, dict[str, Any]] = {}
        for t in sorted(by_type, key=lambda t: (order.get(t, len(order)), t)):
            rs = by_type[t]
            changes = [r.change for r in rs if r.change is not None]
            cos = [
                r.diff.cosine_sim
                for r in rs
                if r.diff.change_type in _COMPARED and r.diff.cosine_sim is not None
            ]
            flips = [
                r.diff.sign_flip_ratio
                for r in rs
                if r.diff.change_type in _COMPARED and r.diff.sign_flip_ratio is not None
            ]
            out[t] = {
                "count": len(rs),
                "changed": sum(1 for r in rs if r.diff.is_changed),
                "frozen": sum(1 for r in rs if r.diff.change_type is ChangeType.UNCHANGED),
                # Mean relative change over tensors where it is defined; 0.0 when none is
                # (then "measured" is 0): the original API formats this as a float.
                "avg_change": _mean(changes) or 0.0,
                "max_change": max(changes, default=0.0),
                "aggregate_change": _aggregate(rs) or 0.0,
                "measured": len(changes),
                "avg_cosine": _mean(cos),
                "avg_sign_flip_ratio": _mean(flips),
                "num_elements": sum(r.diff.num_elements for r in rs),
            }
        return out

    # -- insights -----------------------------------------------------------------------
    def _insights(
        self,
        rows: Sequence[_Row],
        summary: DiffSummary,
        result: dict[str, Any],
        missing_unchanged: int,
        tied: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        cfg = self.config
        out: list[dict[str, Any]] = []
        out += _nonfinite_insight(rows, summary)
        out += _frozen_insight(rows, summary, missing_unchanged)
        out += _architecture_insights(rows, summary)
        compared = [r for r in rows if r.diff.change_type in _COMPARED and r.diff.is_changed]

        low = [
            r
            for r in compared
            if r.diff.cosine_sim is not None and r.diff.cosine_sim < cfg.low_cosine_threshold
        ]
        if low:
            names = [r.name for r in low]
            values = {r.name: r.diff.cosine_sim for r in low}
            worst = min(low, key=lambda r: (r.diff.cosine_sim or 0.0, natural_key(r.name)))
            out.append(
                _insight(
                    "low-cosine",
                    "warning",
                    "stability",
                    f"{len(low)} tensor(s) changed direction "
                    f"(cosine < {cfg.low_cosine_threshold:g})",
                    f"Cosine similarity between old and new fell below "
                    f"{cfg.low_cosine_threshold:g} for {_names(names)}; lowest "
                    f"{_fmt(worst.diff.cosine_sim)} ({worst.name}). Such tensors were largely "
                    f"rewritten: check the learning rate or whether they were re-initialised.",
                    {
                        "tensors": names,
                        "cosine_sim": values,
                        "min": worst.diff.cosine_sim,
                        "threshold": cfg.low_cosine_threshold,
                    },
                )
            )

        large = [
            r
            for r in compared
            if r.change is not None and r.change >= cfg.significant_change_threshold
        ]
        if large:
            names = [r.name for r in large]
            top = max(large, key=lambda r: r.change or 0.0)  # first in name order on ties
            out.append(
                _insight(
                    "large-relative-change",
                    "warning",
                    "training",
                    f"{len(large)} tensor(s) changed by >= {cfg.significant_change_threshold:.0%} "
                    f"of their norm",
                    f"||new - old|| / ||old|| reached {cfg.significant_change_threshold:g} or more "
                    f"for {_names(names)}; largest {_fmt(top.change)} ({top.name}).",
                    {
                        "tensors": names,
                        "relative_change": {r.name: r.change for r in large},
                        "max": top.change,
                        "threshold": cfg.significant_change_threshold,
                    },
                )
            )

        out += _norm_insights(rows, cfg.norm_ratio_threshold)

        flips = [
            r
            for r in compared
            if r.diff.sign_flip_ratio is not None and r.diff.sign_flip_ratio >= SIGN_FLIP_WARN
        ]
        if flips:
            names = [r.name for r in flips]
            out.append(
                _insight(
                    "sign-flips",
                    "warning",
                    "stability",
                    f"{len(flips)} tensor(s) flipped the sign of "
                    f">= {SIGN_FLIP_WARN:.0%} of elements",
                    f"Sign flips on a large share of elements in {_names(names)}: a fine-tune "
                    f"flips few signs; about half flipped means the tensor was re-initialised.",
                    {
                        "tensors": names,
                        "sign_flip_ratio": {r.name: r.diff.sign_flip_ratio for r in flips},
                        "threshold": SIGN_FLIP_WARN,
                    },
                )
            )

        out += _low_rank_insight(rows)
        if tied:
            pairs = [f"{t['embedding']} = {t['head']}" for t in tied]
            confirmed = all(t["confirmed"] for t in tied)
            out.append(
                _insight(
                    "tied-weights",
                    "info",
                    "architecture",
                    f"{len(tied)} embedding/head pair(s) look tied",
                    f"{'; '.join(pairs)}: identical "
                    f"{'contents' if confirmed else 'shape and statistics on both sides'}, so "
                    f"they are one set of weights (their changes are one change)"
                    f"{'' if confirmed else '; pass the checkpoints to confirm bytes'}.",
                    {
                        "tensors": natural_sorted(
                            {n for t in tied for n in (t["embedding"], t["head"])}
                        ),
                        "pairs": tied,
                    },
                )
            )

        pattern = result["change_pattern"]
        if self.config.analyze_training_dynamics and pattern not in (NO_CHANGE, NOT_ANALYZED):
            ev = dict(result["pattern_evidence"])
            desc = _PATTERN_TEXT[pattern] + _pattern_detail(pattern, ev, summary)
            if missing_unchanged:
                desc += (
                    f" (computed without the {missing_unchanged} unchanged tensors, which "
                    f"were not listed: diff with include_unchanged=True for exact depth "
                    f"and sparsity)"
                )
            out.append(
                _insight(
                    "change-pattern",
                    "info",
                    "training",
                    f"Change pattern: {pattern.replace('_', ' ')}",
                    desc + ".",
                    {"tensors": [], "pattern": pattern, **ev},
                )
            )
        return out


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


def _pattern_detail(pattern: str, ev: Mapping[str, Any], summary: DiffSummary) -> str:
    """The deciding number, in words (the evidence keeps it unrounded)."""

    def ratio(key: str) -> str:
        v = ev.get(key)
        return "without bound" if v is None else f"{v:.3g}x"

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
        return f" ({_names(list(ev.get('units_hit') or []))})"
    if pattern == "uniform":
        cv = ev.get("block_change_cv", 0.0)
        return f" (spread of block changes: coefficient of variation {cv:.2g})"
    return ""


# -- patterns ------------------------------------------------------------------------------
def classify_pattern(
    rows: Sequence[_Row], summary: DiffSummary, total: int
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
    by_type: dict[str, list[_Row]] = {}
    for r in rows:
        by_type.setdefault(r.layer_type, []).append(r)
    agg = {t: _aggregate(rs) for t, rs in by_type.items()}
    ev: dict[str, Any] = {
        "reference_change": reference,
        "significant_cut": cut,
        "significant_tensors": len(sig),
        "significant_fraction": sig_fraction,
        "type_aggregate_change": {t: agg[t] for t in sorted(agg)},
    }

    # 1. embedding_heavy
    emb = agg.get(layers.EMBEDDING)
    rest = _aggregate([r for r in rows if r.layer_type != layers.EMBEDDING])
    if emb and emb > 0 and (not rest or emb >= HEAVY_RATIO * rest):
        ev["embedding_vs_rest"] = emb / rest if rest else None
        return "embedding_heavy", ev

    # 2. focused: whole units (blocks / non-block layer types) hold every significant change
    units: dict[str, list[_Row]] = {}
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
    early = _aggregate([r for r in blocked if r.block and r.block.depth < 0.5])
    late = _aggregate([r for r in blocked if r.block and r.block.depth > 0.5])
    block_aggs = [
        a
        for a in (_aggregate(rs) for rs in units.values() if rs[0].block is not None)
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
    mean = _mean(spread) or 0.0
    cv = (math.sqrt(_mean([(x - mean) ** 2 for x in spread]) or 0.0) / mean) if mean else 0.0
    ev["block_change_cv"] = cv
    return ("uniform" if cv <= UNIFORM_CV else "focused"), ev


def _depth_profile(rows: Sequence[_Row]) -> list[dict[str, Any]]:
    """One entry per (block, layer type), ordered by block ordinal then type."""
    groups: dict[tuple[int, str], list[_Row]] = {}
    for r in rows:
        if r.block is not None:
            groups.setdefault((r.block.ordinal, r.layer_type), []).append(r)
    order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}
    out = []
    for ordinal, t in sorted(groups, key=lambda k: (k[0], order.get(k[1], len(order)), k[1])):
        rs = groups[(ordinal, t)]
        block = rs[0].block
        assert block is not None  # grouped on it above
        changes = [r.change for r in rs if r.change is not None]
        out.append(
            {
                "block": ordinal,
                "label": block.label,
                "depth": block.depth,
                "layer_type": t,
                "count": len(rs),
                "frozen": sum(1 for r in rs if not r.diff.is_changed),
                "avg_change": _mean(changes) or 0.0,
                "aggregate_change": _aggregate(rs) or 0.0,
                "measured": len(changes),
            }
        )
    return out


# -- individual insights -----------------------------------------------------------------
def _nonfinite_insight(rows: Sequence[_Row], summary: DiffSummary) -> list[dict[str, Any]]:
    bad = {r.name: r for r in rows if r.diff.nonfinite_new > 0}
    names = natural_sorted(set(bad) | set(summary.nonfinite_tensors))
    if not names:
        return []
    counts: dict[str, dict[str, int | None]] = {}
    new, pre = [], []
    for n in names:
        r = bad.get(n)
        s = r.diff.new_stats if r is not None else None
        counts[n] = {"nan": s.nan_count if s else None, "inf": s.inf_count if s else None}
        # Unlisted names come from the summary: those were unchanged, so pre-existing.
        if r is not None and r.diff.nonfinite_old == 0:
            new.append(n)
        else:
            pre.append(n)
    parts = []
    if new:
        parts.append(f"NaN/Inf appeared in {_names(new)}")
    if pre:
        parts.append(f"already present in the old checkpoint in {_names(pre)}")
    return [
        _insight(
            "nonfinite-values",
            "critical",
            "stability",
            f"NaN/Inf in {len(names)} tensor(s) of the new checkpoint",
            "; ".join(parts) + ". Training diverged or the checkpoint is corrupt.",
            {"tensors": names, "appeared": new, "preexisting": pre, "counts": counts},
        )
    ]


def _unit_label(r: _Row) -> str:
    return r.block.label if r.block is not None else r.name


def _frozen_insight(
    rows: Sequence[_Row], summary: DiffSummary, missing: int
) -> list[dict[str, Any]]:
    n_frozen = summary.unchanged_parameters
    total = summary.total_parameters
    if n_frozen == 0:
        return []
    if n_frozen == total:
        return [
            _insight(
                "no-change",
                "info",
                "training",
                "No tensor changed",
                f"All {total} tensors are bit-identical in both checkpoints.",
                {"tensors": [], "count": total},
            )
        ]
    frozen = [r for r in rows if r.diff.change_type is ChangeType.UNCHANGED]
    if missing:
        names = [r.name for r in frozen]
        return [
            _insight(
                "frozen-layers",
                "info",
                "training",
                f"{n_frozen} of {total} tensors frozen (bit-identical)",
                f"{n_frozen} tensors are exactly unchanged; their names were not listed (diff "
                f"with include_unchanged=True, as `model-diff compare` does, to see which).",
                {
                    "tensors": names,
                    "count": n_frozen,
                    "total": total,
                    "names_listed": False,
                    "groups": [],
                },
            )
        ]
    # Group by block (or by tensor outside blocks); whole frozen blocks are merged in runs.
    groups: dict[str, list[_Row]] = {}
    members: dict[str, int] = {}
    for r in rows:
        members[_unit_label(r)] = members.get(_unit_label(r), 0) + 1
    for r in frozen:
        groups.setdefault(_unit_label(r), []).append(r)
    group_ev: list[dict[str, Any]] = [
        {
            "group": g,
            "frozen": len(groups[g]),
            "total": members[g],
            "tensors": [r.name for r in groups[g]],
        }
        for g in natural_sorted(groups)
    ]
    whole = [g for g in group_ev if g["frozen"] == g["total"] and groups[g["group"]][0].block]
    parts = _block_runs([groups[g["group"]][0] for g in whole])
    for g in group_ev:
        if g in whole:
            continue
        r0 = groups[g["group"]][0]
        parts.append(
            g["group"]
            if r0.block is None
            else f"{g['group']} ({g['frozen']} of {g['total']} tensors)"
        )
    return [
        _insight(
            "frozen-layers",
            "info",
            "training",
            f"{n_frozen} of {total} tensors frozen (bit-identical)",
            f"Exactly unchanged: {_names(parts)}.",
            {
                "tensors": [r.name for r in frozen],
                "count": n_frozen,
                "total": total,
                "names_listed": True,
                "whole_blocks": [g["group"] for g in whole],
                "groups": group_ev,
            },
        )
    ]


def _block_runs(rows: Sequence[_Row]) -> list[str]:
    """'model.layers.0-7 (whole blocks)' for consecutive whole frozen blocks."""
    out: list[str] = []
    blocks = sorted((r.block for r in rows if r.block is not None), key=lambda b: b.ordinal)
    i = 0
    while i < len(blocks):
        j = i
        while (
            j + 1 < len(blocks)
            and blocks[j + 1].ordinal == blocks[j].ordinal + 1
            and blocks[j + 1].stack == blocks[i].stack
        ):
            j += 1
        first, last = blocks[i].label, blocks[j].label
        if i == j:
            out.append(f"{first} (whole block)")
        else:
            tail = re.search(r"[\d.]+$", last[len(blocks[j].stack) :])
            out.append(
                f"{first}-{tail.group(0).lstrip('.') if tail else last} ({j - i + 1} whole blocks)"
            )
        i = j + 1
    return out


def _architecture_insights(rows: Sequence[_Row], summary: DiffSummary) -> list[dict[str, Any]]:
    out = []
    added = [r.name for r in rows if r.diff.change_type is ChangeType.ADDED]
    removed = [r.name for r in rows if r.diff.change_type is ChangeType.REMOVED]
    n_add = max(len(added), summary.added_parameters)
    n_rem = max(len(removed), summary.removed_parameters)
    if n_add or n_rem:
        parts = []
        if n_add:
            parts.append(f"added {n_add}: {_names(added)}")
        if n_rem:
            parts.append(f"removed {n_rem}: {_names(removed)}")
        out.append(
            _insight(
                "architecture-changed",
                "warning",
                "architecture",
                f"Architecture changed: {n_add} tensor(s) added, {n_rem} removed",
                "Tensors " + "; ".join(parts) + ".",
                {"tensors": natural_sorted(added + removed), "added": added, "removed": removed},
            )
        )
    shaped = [r for r in rows if r.diff.change_type is ChangeType.SHAPE_CHANGED]
    if shaped:
        details = {}
        parts = []
        for r in shaped:
            d = r.diff
            details[r.name] = {
                "old_shape": list(d.old_shape or ()),
                "new_shape": list(d.new_shape or ()),
                "overlap_rows": d.overlap_rows,
                "added_rows": d.added_rows,
                "overlap_relative_change": d.relative_change,
            }
            old_s = "x".join(map(str, d.old_shape or ()))
            new_s = "x".join(map(str, d.new_shape or ()))
            if d.overlap_rows is not None and d.added_rows is not None:
                kind = (
                    "vocabulary resize"
                    if r.layer_type in (layers.EMBEDDING, layers.HEAD)
                    else "first-axis resize"
                )
                parts.append(
                    f"{r.name} {old_s} -> {new_s} ({kind}, {d.added_rows:+d} rows; "
                    f"the {d.overlap_rows} kept rows changed by "
                    f"{_fmt(d.relative_change)})"
                )
            else:
                parts.append(f"{r.name} {old_s} -> {new_s}")
        shown = "; ".join(parts[:_DESCRIBE_MAX])
        if len(parts) > _DESCRIBE_MAX:
            shown += f"; and {len(parts) - _DESCRIBE_MAX} more"
        out.append(
            _insight(
                "shape-changed",
                "warning",
                "architecture",
                f"{len(shaped)} tensor(s) changed shape",
                shown + ".",
                {"tensors": [r.name for r in shaped], "shapes": details},
            )
        )
    dtyped = [r for r in rows if r.diff.change_type is ChangeType.DTYPE_CHANGED]
    if dtyped:
        conv: dict[str, list[str]] = {}
        for r in dtyped:
            conv.setdefault(f"{r.diff.old_dtype} -> {r.diff.new_dtype}", []).append(r.name)
        desc = "; ".join(f"{k}: {len(v)} tensor(s) ({_names(v)})" for k, v in sorted(conv.items()))
        out.append(
            _insight(
                "dtype-changed",
                "info",
                "architecture",
                f"{len(dtyped)} tensor(s) changed dtype",
                desc + ".",
                {
                    "tensors": [r.name for r in dtyped],
                    "conversions": {k: len(v) for k, v in sorted(conv.items())},
                },
            )
        )
    return out


def _norm_insights(rows: Sequence[_Row], threshold: float) -> list[dict[str, Any]]:
    up: dict[str, float] = {}
    down: dict[str, float] = {}
    for r in rows:
        d = r.diff
        if not d.is_changed or d.change_type not in _COMPARED:
            continue
        o, n = d.old_norm, d.new_norm
        if o is None or n is None or not (o > 0) or not math.isfinite(n):
            continue
        ratio = n / o
        if ratio >= threshold:
            up[r.name] = ratio
        elif ratio <= 1.0 / threshold:
            down[r.name] = ratio
    out = []
    for code, sel, word in (("norm-explosion", up, "grew"), ("norm-collapse", down, "shrank")):
        if not sel:
            continue
        names = natural_sorted(sel)
        extreme = (max if code == "norm-explosion" else min)(sel.values())
        out.append(
            _insight(
                code,
                "warning",
                "stability",
                f"{len(names)} tensor(s) {word} in norm by {threshold:g}x or more",
                f"||new|| / ||old|| {'>=' if code == 'norm-explosion' else '<='} "
                f"{threshold if code == 'norm-explosion' else 1 / threshold:.3g} for "
                f"{_names(names)} (most extreme {_fmt(extreme)}).",
                {
                    "tensors": names,
                    "norm_ratio": {n: sel[n] for n in names},
                    "threshold": threshold,
                },
            )
        )
    return out


def _low_rank_summary(rows: Sequence[_Row]) -> dict[str, Any]:
    tensors = {r.name: r.diff.low_rank for r in rows if r.diff.low_rank is not None}
    analysed = {n: v for n, v in tensors.items() if "rank_90" in v}
    return {"analysed": len(analysed), "skipped": len(tensors) - len(analysed), "tensors": tensors}


def _low_rank_insight(rows: Sequence[_Row]) -> list[dict[str, Any]]:
    hits: dict[str, dict[str, Any]] = {}
    for r in rows:
        lr = r.diff.low_rank
        if not lr or lr.get("rank_99") is None or not r.diff.new_shape:
            continue
        m = min(r.diff.new_shape)
        if 0 < lr["rank_99"] <= LOW_RANK_FRACTION * m:
            hits[r.name] = lr
    if not hits:
        return []
    names = natural_sorted(hits)
    ranks = sorted({hits[n]["rank_99"] for n in names})
    return [
        _insight(
            "low-rank-delta",
            "info",
            "structure",
            f"{len(names)} weight update(s) are low-rank (LoRA-extractable)",
            f"99% of the update's energy lies in rank {ranks[0]}"
            f"{'' if len(ranks) == 1 else f' to {ranks[-1]}'} for {_names(names)}: the change "
            f"could be stored as a LoRA adapter of that rank.",
            {
                "tensors": names,
                "rank_99": {n: hits[n]["rank_99"] for n in names},
                "rank_90": {n: hits[n]["rank_90"] for n in names},
            },
        )
    ]


# -- tied weights --------------------------------------------------------------------------
def find_tied_candidates(
    rows: Sequence[_Row], old: Checkpoint | None = None, new: Checkpoint | None = None
) -> list[dict[str, Any]]:
    """Embedding/head pairs with the same shape and identical statistics on both sides.

    With the checkpoints at hand the pair is confirmed (or dropped) by comparing the bytes of
    the two tensors in each checkpoint; otherwise it is reported with ``confirmed: False``.
    """
    embs = [r for r in rows if r.layer_type == layers.EMBEDDING and r.diff.new_stats]
    heads = [r for r in rows if r.layer_type == layers.HEAD and r.diff.new_stats]
    out = []
    for e in embs:
        for h in heads:
            de, dh = e.diff, h.diff
            if (
                de.new_shape != dh.new_shape
                or de.new_dtype != dh.new_dtype
                or de.new_stats != dh.new_stats
                or de.old_stats != dh.old_stats
            ):
                continue
            confirmed = False
            if old is not None or new is not None:
                same = [_same_bytes(c, e.name, h.name) for c in (old, new) if c is not None]
                if not all(same):
                    continue
                confirmed = True
            out.append({"embedding": e.name, "head": h.name, "confirmed": confirmed})
    return out


def _same_bytes(ckpt: Checkpoint, a: str, b: str) -> bool:
    from .metrics import bytes_equal  # only when confirming tied weights

    if a not in ckpt.tensors or b not in ckpt.tensors:
        return False
    ra, rb = ckpt.tensors[a], ckpt.tensors[b]
    try:
        return (
            ra.dtype == rb.dtype
            and ra.shape == rb.shape
            and bytes_equal(ra.storage(), rb.storage())
        )
    finally:
        ra.release()
        rb.release()


def compare_training_stages(
    checkpoints: Sequence[str | os.PathLike[str] | Checkpoint],
    **kwargs: Any,
) -> dict[str, Any]:
    """How each block's change evolves over a sequence of checkpoints (model_diff.timeline)."""
    from .timeline import compare_training_stages as run  # lazy: avoids a cycle

    return run(checkpoints, **kwargs)


# -- per-group change sums (used by model_diff.timeline) ------------------------------------
@dataclass(frozen=True)
class GroupChange:
    """How much one group of tensors moved in one pair, by the analyzer's own rules.

    ``kind``: ``block`` (``label`` is the block, e.g. ``model.layers.3``), ``outside_blocks``
    (``label`` is a layer type: the tensors of that type outside every block) or
    ``layer_type`` (``label`` is a layer type: all its tensors). ``d2`` / ``o2`` are
    sum ||new-old||^2 and sum ||old||^2 over the tensors where both are known, so groups pool
    exactly; ``change`` is sqrt(d2 / o2) (None when nothing was measurable). ``frozen``
    counts bit-identical tensors; ``nan`` / ``inf`` count tensors with NaN / Inf in the new
    checkpoint.
    """

    kind: str
    label: str
    tensors: int
    frozen: int
    nan: int
    inf: int
    d2: float
    o2: float
    change: float | None


def group_changes(
    diffs: Sequence[ParameterDiff], config: AnalysisConfig | None = None
) -> list[GroupChange]:
    """Blocks, then layer types outside blocks, then layer types over the whole model (each in
    report order), for ``diffs`` of one pair (pass unchanged tensors too, or frozen groups
    read as unmeasured)."""
    classifier = layers.LayerClassifier((config or AnalysisConfig()).layer_patterns)
    rows = _make_rows(diffs, classifier)
    groups: dict[tuple[str, str], list[_Row]] = {}
    for r in rows:
        key = ("block", r.block.label) if r.block else ("outside_blocks", r.layer_type)
        groups.setdefault(key, []).append(r)
    for r in rows:
        groups.setdefault(("layer_type", r.layer_type), []).append(r)
    type_order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}
    ordinal = {r.block.label: r.block.ordinal for r in rows if r.block}

    def order(key: tuple[str, str]) -> tuple[int, int, str]:
        kind, label = key
        if kind == "block":
            return 0, ordinal[label], label
        return (1 if kind == "outside_blocks" else 2), type_order.get(label, 99), label

    out = []
    for key in sorted(groups, key=order):
        rs = groups[key]
        known = [r for r in rs if r.d2 is not None and r.o2 is not None]
        out.append(
            GroupChange(
                kind=key[0],
                label=key[1],
                tensors=len(rs),
                frozen=sum(1 for r in rs if r.diff.change_type is ChangeType.UNCHANGED),
                nan=sum(1 for r in rs if r.diff.new_stats and r.diff.new_stats.nan_count),
                inf=sum(1 for r in rs if r.diff.new_stats and r.diff.new_stats.inf_count),
                d2=math.fsum(r.d2 for r in known if r.d2 is not None),
                o2=math.fsum(r.o2 for r in known if r.o2 is not None),
                change=_aggregate(rs),
            )
        )
    return out
