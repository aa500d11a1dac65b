"""DiffAnalyzer: the one judge of a diff. Layer analysis, a change pattern and insights.

``DiffAnalyzer(AnalysisConfig(...)).run(diffs, summary) -> Analysis`` is the typed result
every internal consumer uses (reports, hooks, the git drivers, the timeline);
``analyze(diffs, summary) -> dict`` is ``run(...).to_dict()``: the original API's dict
(``change_pattern``, ``layer_analysis[type]["count"/"avg_change"]``, ``insights`` with
``severity``/``title``/``description``) plus stable insight ``code``s, ``category``,
``evidence``, a per-block ``depth_profile``, ``frozen_layers``, a ``low_rank`` summary and
``stats``. Codes are documented in docs/insights.md.

Every finding (code, tensors, severity, numbers) is made here, by ``model_diff.insights``,
with the thresholds of ``AnalysisConfig``; a policy (``hooks.policy``) only sets those
thresholds, the allowed-frozen globs and each code's ``level``, so a report rendered under a
policy and the gate under it say the same thing (docs/analysis.md, "One judge").

Rules kept here: undefined metrics (None) are skipped and counted, never averaged in, and an
average over nothing is None; non-trainable buffers are never frozen; change patterns are
computed over every tensor, unchanged ones included; floats stay unrounded (only
descriptions round). Output order is deterministic. This module reads results only: it must
not load tensors (except the optional tied-weight confirmation, which compares two candidate
tensors' bytes), print, or import click/torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from . import insights as found
from . import layers
from .diff import ChangeType, DiffConfig, DiffSummary, ParameterDiff, summarize
from .findings import LEVELS, SEVERITIES, Insight, default_level, sort_insights
from .naming import natural_key
from .patterns import NO_CHANGE, NOT_ANALYZED, PATTERNS, classify_pattern, describe_pattern
from .quantization import CODES as QUANTIZATION_CODES
from .quantization import TRAINING_CODES, analyze_quantization
from .rows import COMPARED, Row, aggregate_change, make_rows, mean

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, TensorInfo

__all__ = [
    "INSIGHT_CODES",
    "NOT_ANALYZED",
    "NO_CHANGE",
    "PATTERNS",
    "SEVERITIES",
    "Analysis",
    "AnalysisConfig",
    "DepthEntry",
    "DiffAnalyzer",
    "GroupChange",
    "Insight",
    "LayerStats",
    "Row",
    "aggregate_change",
    "find_tied_candidates",
    "group_changes",
    "make_rows",
]

#: Every insight code the analyzer emits (documented in docs/insights.md; policies use them).
INSIGHT_CODES: tuple[str, ...] = (
    "nonfinite-values",
    "unchecked-tensors",
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


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


@dataclass
class AnalysisConfig:
    """Options of the analysis; every field changes the result (docs/analysis.md).

    ``significant_change_threshold``: a changed tensor whose relative change ||new-old||/||old||
    is at least this gets a ``large-relative-change`` insight (inf: never).
    ``layer_patterns``: {type: regex} overrides searched in each tensor name before the
    built-in rules (first match wins; types stay exclusive). ``analyze_training_dynamics``:
    classify the change pattern and build the depth profile (False: ``change_pattern`` is
    "not_analyzed", no profile, no ``change-pattern`` insight). ``low_cosine_threshold``:
    changed tensors with a cosine similarity below it get ``low-cosine`` (-inf: never).
    ``norm_ratio_threshold``: new/old norm ratio at or above it is ``norm-explosion``, at or
    below its inverse ``norm-collapse``. ``allowed_frozen``: fnmatch globs of tensors expected
    to stay bit-identical (listed in the ``frozen-layers`` evidence, not reported). ``levels``:
    what a gate does with each code (error | warning | ignore), set by a policy; codes it
    does not name take their severity's level (critical -> error, warning -> warning,
    info -> ignore). None: no policy, insights carry no level.
    """

    significant_change_threshold: float = 0.1
    layer_patterns: dict[str, str] = field(default_factory=dict)
    analyze_training_dynamics: bool = True
    low_cosine_threshold: float = 0.9
    norm_ratio_threshold: float = 2.0
    allowed_frozen: tuple[str, ...] = ()
    levels: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        t = self.significant_change_threshold
        if not (_is_number(t) and t > 0):
            raise ValueError("significant_change_threshold must be a number > 0 (inf: never)")
        c = self.low_cosine_threshold
        if not (_is_number(c) and (-1.0 <= c <= 1.0 or c == -math.inf)):
            raise ValueError("low_cosine_threshold must be a number in [-1, 1] (-inf: never)")
        r = self.norm_ratio_threshold
        if not (_is_number(r) and math.isfinite(r) and r > 1.0):
            raise ValueError("norm_ratio_threshold must be a number > 1")
        if not isinstance(self.layer_patterns, Mapping):
            raise ValueError("layer_patterns must be a dict {layer_type: regex}")
        layers.LayerClassifier(self.layer_patterns)  # validates every regex now
        if isinstance(self.allowed_frozen, str) or not all(
            isinstance(g, str) and g for g in self.allowed_frozen
        ):
            raise ValueError("allowed_frozen must be a sequence of glob strings")
        self.allowed_frozen = tuple(self.allowed_frozen)
        if self.levels is not None:
            bad = {k: v for k, v in self.levels.items() if v not in LEVELS}
            if bad:
                raise ValueError(f"levels must map codes to {' | '.join(LEVELS)}, got {bad}")
            if self.levels.get("nonfinite-values", "error") != "error":
                raise ValueError("levels: nonfinite-values is always an error")

    def level_of(self, insight: Insight) -> str | None:
        """The gate level of ``insight`` under ``levels`` (None without a policy)."""
        if self.levels is None:
            return None
        if insight.code == "nonfinite-values":
            return "error"
        return self.levels.get(insight.code) or default_level(insight.severity)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["allowed_frozen"] = list(self.allowed_frozen)
        out["levels"] = dict(sorted(self.levels.items())) if self.levels is not None else None
        return out


# -- the typed result ------------------------------------------------------------------------
def _opt_int(x: Any) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else None


def _opt_float(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class LayerStats:
    """One layer type's tensors: counts and how much they moved (None: nothing to average)."""

    layer_type: str
    count: int | None
    changed: int | None
    frozen: int | None
    #: mean relative change over the ``measured`` tensors where it is defined
    avg_change: float | None
    max_change: float | None
    #: sqrt(sum ||delta||^2 / sum ||old||^2)
    aggregate_change: float | None
    measured: int | None
    avg_cosine: float | None
    avg_sign_flip_ratio: float | None
    num_elements: int | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layer_type"}

    @classmethod
    def from_dict(cls, layer_type: str, raw: Mapping[str, Any]) -> LayerStats:
        """Tolerant: a missing or malformed value reads as None."""
        return cls(
            layer_type=layer_type,
            count=_opt_int(raw.get("count")),
            changed=_opt_int(raw.get("changed")),
            frozen=_opt_int(raw.get("frozen")),
            avg_change=_opt_float(raw.get("avg_change")),
            max_change=_opt_float(raw.get("max_change")),
            aggregate_change=_opt_float(raw.get("aggregate_change")),
            measured=_opt_int(raw.get("measured")),
            avg_cosine=_opt_float(raw.get("avg_cosine")),
            avg_sign_flip_ratio=_opt_float(raw.get("avg_sign_flip_ratio")),
            num_elements=_opt_int(raw.get("num_elements")),
        )


@dataclass(frozen=True)
class DepthEntry:
    """One (block, layer type) cell of the depth profile."""

    block: int
    label: str
    depth: float | None
    layer_type: str
    count: int | None
    frozen: int | None
    avg_change: float | None
    aggregate_change: float | None
    measured: int | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DepthEntry | None:
        """None when the entry has no integer block (it cannot be placed)."""
        block = _opt_int(raw.get("block"))
        if block is None:
            return None
        return cls(
            block=block,
            label=str(raw.get("label", block)),
            depth=_opt_float(raw.get("depth")),
            layer_type=str(raw.get("layer_type", layers.OTHER)),
            count=_opt_int(raw.get("count")),
            frozen=_opt_int(raw.get("frozen")),
            avg_change=_opt_float(raw.get("avg_change")),
            aggregate_change=_opt_float(raw.get("aggregate_change")),
            measured=_opt_int(raw.get("measured")),
        )


@dataclass(frozen=True)
class Analysis:
    """What ``DiffAnalyzer.run`` found. ``to_dict()`` is the original API's dict."""

    change_pattern: str | None
    pattern_evidence: Mapping[str, Any]
    #: one entry per layer type present, in report order
    layer_analysis: tuple[LayerStats, ...]
    depth_profile: tuple[DepthEntry, ...]
    #: critical -> warning -> info, then by code
    insights: tuple[Insight, ...]
    #: trainable tensors that stayed bit-identical (buffers never; allowed ones included)
    frozen: tuple[str, ...]
    low_rank: Mapping[str, Any]
    tied_weights: tuple[Mapping[str, Any], ...]
    stats: Mapping[str, Any]
    config: Mapping[str, Any]
    #: the quantization section when one side is a quantization of the other
    quantization: Mapping[str, Any] | None = None
    #: the rows the analysis was computed from (not serialised; empty when read from a dict)
    rows: tuple[Row, ...] = field(default=(), repr=False, compare=False)

    def layer(self, layer_type: str) -> LayerStats | None:
        return next((s for s in self.layer_analysis if s.layer_type == layer_type), None)

    def insight(self, code: str) -> Insight | None:
        """The insight with ``code`` (None when absent)."""
        return next((i for i in self.insights if i.code == code), None)

    @property
    def codes(self) -> list[str]:
        return [i.code for i in self.insights]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "change_pattern": self.change_pattern,
            "pattern_evidence": dict(self.pattern_evidence),
            "layer_analysis": {s.layer_type: s.to_dict() for s in self.layer_analysis},
            "depth_profile": [e.to_dict() for e in self.depth_profile],
            "insights": [i.to_dict() for i in self.insights],
            "frozen_layers": list(self.frozen),
            "low_rank": dict(self.low_rank),
            "tied_weights": [dict(t) for t in self.tied_weights],
            "stats": dict(self.stats),
            "config": dict(self.config),
        }
        if self.quantization is not None:
            out["quantization"] = dict(self.quantization)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Analysis:
        """The typed form of an analysis dict (``analyze()``'s, or a caller's own).

        Tolerant, like the reports that take such dicts: missing keys are empty, malformed
        values are dropped, insights are ordered by severity (stable within one)."""

        def mapping(key: str) -> Mapping[str, Any]:
            v = raw.get(key)
            return v if isinstance(v, Mapping) else {}

        def seq(key: str) -> list[Any]:
            v = raw.get(key)
            return list(v) if isinstance(v, (list, tuple)) else []

        la = mapping("layer_analysis")
        order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}
        stats = tuple(
            LayerStats.from_dict(str(t), la[t] if isinstance(la[t], Mapping) else {})
            for t in sorted(la, key=lambda t: (order.get(t, len(order)), str(t)))
        )
        depth = [DepthEntry.from_dict(p) for p in seq("depth_profile") if isinstance(p, Mapping)]
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        insights = sorted(
            (Insight.from_dict(i) for i in seq("insights") if isinstance(i, Mapping)),
            key=lambda i: rank[i.severity],
        )
        pattern = raw.get("change_pattern")
        quantization = raw.get("quantization")
        return cls(
            change_pattern=str(pattern) if pattern is not None else None,
            pattern_evidence=mapping("pattern_evidence"),
            layer_analysis=stats,
            depth_profile=tuple(e for e in depth if e is not None),
            insights=tuple(insights),
            frozen=tuple(str(n) for n in seq("frozen_layers")),
            low_rank=mapping("low_rank"),
            tied_weights=tuple(t for t in seq("tied_weights") if isinstance(t, Mapping)),
            stats=mapping("stats"),
            config=mapping("config"),
            quantization=quantization
            if isinstance(quantization, Mapping) and quantization
            else None,
        )


# -- the analyzer ------------------------------------------------------------------------------
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
        """The analysis dict of the original API: ``run(...).to_dict()``."""
        return self.run(diffs, summary, old=old, new=new).to_dict()

    def run(
        self,
        diffs: Sequence[ParameterDiff],
        summary: DiffSummary | None = None,
        *,
        old: Checkpoint | None = None,
        new: Checkpoint | None = None,
    ) -> Analysis:
        """The typed analysis of one diff (see docs/INTERNALS.md "Analysis").

        Pass every tensor pair, unchanged ones included (``include_unchanged=True``):
        frozen tensors are named and patterns weigh them. Without them the analysis counts
        the unchanged tensors from the summary and says their names are missing.
        ``old``/``new`` (optional, still open) let the tied-weight check confirm candidates
        by comparing bytes, and name the new checkpoint's unreadable tensors.
        """
        diffs = sorted(diffs, key=lambda d: natural_key(d.name))
        if summary is None:
            summary = summarize(diffs, DiffConfig())
        rows = make_rows(diffs, self.classifier)
        listed = {d.name for d in diffs}
        unlisted = [n for n in summary.unchanged_tensors if n not in listed]
        listed_unchanged = sum(1 for d in diffs if d.change_type is ChangeType.UNCHANGED)
        missing = max(0, summary.unchanged_parameters - listed_unchanged)
        total = max(summary.total_parameters, len(diffs))
        cfg = self.config

        pattern: str = NOT_ANALYZED
        evidence: dict[str, Any] = {}
        depth: tuple[DepthEntry, ...] = ()
        if cfg.analyze_training_dynamics:
            pattern, evidence = classify_pattern(rows, summary, total)
            depth = _depth_profile(rows)
        tied = find_tied_candidates(rows, old, new)

        out: list[Insight] = []
        out += found.nonfinite_insight(rows, summary)
        out += found.unchecked_insight(new.unchecked if new is not None else {})
        out += found.frozen_insight(rows, summary, cfg.allowed_frozen, unlisted)
        out += found.architecture_insights(rows, summary)
        out += found.low_cosine_insight(rows, cfg.low_cosine_threshold)
        out += found.large_change_insight(rows, cfg.significant_change_threshold)
        out += found.norm_insights(rows, cfg.norm_ratio_threshold)
        out += found.sign_flip_insight(rows)
        out += found.low_rank_insight(rows)
        out += found.tied_insight(tied)
        if cfg.analyze_training_dynamics and pattern not in (NO_CHANGE, NOT_ANALYZED):
            out.append(_pattern_insight(pattern, evidence, summary, missing))
        frozen = tuple(found.frozen_names(rows, unlisted))

        # A quantized side is never judged as training (model_diff.quantization): its
        # section and insights replace the training ones.
        quantization = analyze_quantization(diffs, summary, self.classifier.layer_type)
        section: Mapping[str, Any] | None = None
        if quantization is not None:
            section, quant_insights = quantization
            out = [i for i in out if i.code not in TRAINING_CODES] + quant_insights
            pattern = NOT_ANALYZED
            evidence = {"reason": "one side is a quantization of the other"}
            frozen = ()

        insights = tuple(
            dataclasses.replace(i, level=cfg.level_of(i)) if cfg.levels is not None else i
            for i in sort_insights(out)
        )
        return Analysis(
            change_pattern=pattern,
            pattern_evidence=evidence,
            layer_analysis=_layer_analysis(rows),
            depth_profile=depth,
            insights=insights,
            frozen=frozen,
            low_rank=_low_rank_summary(rows),
            tied_weights=tuple(tied),
            stats=_stats(rows, summary, total, missing),
            config=cfg.to_dict(),
            quantization=section,
            rows=tuple(rows),
        )

    def health(
        self, infos: Mapping[str, TensorInfo], unchecked: Mapping[str, str] | None = None
    ) -> tuple[Insight, ...]:
        """The findings about one checkpoint without a base (``model-diff health``, a file
        added in a commit): NaN/Inf per tensor and the tensors that cannot be read."""
        counts = {n: (i.nan_count, i.inf_count) for n, i in infos.items()}
        out = sort_insights(found.health_insights(counts, unchecked or {}))
        if self.config.levels is None:
            return tuple(out)
        return tuple(dataclasses.replace(i, level=self.config.level_of(i)) for i in out)


def _pattern_insight(
    pattern: str, evidence: Mapping[str, Any], summary: DiffSummary, missing: int
) -> Insight:
    desc = describe_pattern(pattern, evidence, summary)
    if missing:
        desc += (
            f" (computed without the {missing} unchanged tensors, which were not listed: "
            f"diff with include_unchanged=True for exact depth and sparsity)"
        )
    return Insight(
        "change-pattern",
        "info",
        "training",
        f"Change pattern: {pattern.replace('_', ' ')}",
        desc + ".",
        {"tensors": [], "pattern": pattern, **evidence},
    )


def _stats(rows: Sequence[Row], summary: DiffSummary, total: int, missing: int) -> dict[str, Any]:
    compared = [r for r in rows if r.diff.change_type in COMPARED and not r.buffer]
    return {
        "tensors": total,
        "listed": len(rows),
        "changed": summary.changed_parameters,
        "unchanged": summary.unchanged_parameters,
        "unchanged_listed": missing == 0,
        "unchanged_missing": missing,
        "buffers": sum(1 for r in rows if r.buffer),
        "undefined_metrics": {
            "relative_change": sum(1 for r in compared if r.change is None),
            "cosine_sim": sum(
                1 for r in compared if r.diff.is_changed and r.diff.cosine_sim is None
            ),
        },
    }


def _layer_analysis(rows: Sequence[Row]) -> tuple[LayerStats, ...]:
    by_type: dict[str, list[Row]] = {}
    for r in rows:
        by_type.setdefault(r.layer_type, []).append(r)
    order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}
    out = []
    for t in sorted(by_type, key=lambda t: (order.get(t, len(order)), t)):
        rs = by_type[t]
        compared = [r for r in rs if r.diff.change_type in COMPARED and not r.buffer]
        changes = [r.change for r in rs if r.change is not None]
        cos = [r.diff.cosine_sim for r in compared if r.diff.cosine_sim is not None]
        flips = [r.diff.sign_flip_ratio for r in compared if r.diff.sign_flip_ratio is not None]
        out.append(
            LayerStats(
                layer_type=t,
                count=len(rs),
                changed=sum(1 for r in rs if r.diff.is_changed),
                frozen=sum(1 for r in rs if found.is_frozen(r)),
                # Over the tensors where a relative change is defined ("measured"); None
                # when there is none: an average over nothing is not 0.
                avg_change=mean(changes),
                max_change=max(changes, default=None),
                aggregate_change=aggregate_change(rs),
                measured=len(changes),
                avg_cosine=mean(cos),
                avg_sign_flip_ratio=mean(flips),
                num_elements=sum(r.diff.num_elements for r in rs),
            )
        )
    return tuple(out)


def _depth_profile(rows: Sequence[Row]) -> tuple[DepthEntry, ...]:
    """One entry per (block, layer type), ordered by block ordinal then type."""
    groups: dict[tuple[int, str], list[Row]] = {}
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
            DepthEntry(
                block=ordinal,
                label=block.label,
                depth=block.depth,
                layer_type=t,
                count=len(rs),
                frozen=sum(1 for r in rs if found.is_frozen(r)),
                avg_change=mean(changes),
                aggregate_change=aggregate_change(rs),
                measured=len(changes),
            )
        )
    return tuple(out)


def _low_rank_summary(rows: Sequence[Row]) -> dict[str, Any]:
    tensors = {r.name: r.diff.low_rank for r in rows if r.diff.low_rank is not None}
    analysed = {n: v for n, v in tensors.items() if "rank_90" in v}
    return {"analysed": len(analysed), "skipped": len(tensors) - len(analysed), "tensors": tensors}


# -- tied weights --------------------------------------------------------------------------
def find_tied_candidates(
    rows: Sequence[Row], old: Checkpoint | None = None, new: Checkpoint | None = None
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


# -- per-group change sums (used by model_diff.timeline) ------------------------------------
@dataclass(frozen=True)
class GroupChange:
    """How much one group of tensors moved in one pair, by the analyzer's own rules.

    ``kind``: ``block`` (``label`` is the block, e.g. ``model.layers.3``), ``outside_blocks``
    (``label`` is a layer type: the tensors of that type outside every block) or
    ``layer_type`` (``label`` is a layer type: all its tensors). ``d2`` / ``o2`` are
    sum ||new-old||^2 and sum ||old||^2 over the tensors where both are known, so groups pool
    exactly; ``change`` is sqrt(d2 / o2) (None when nothing was measurable). ``frozen``
    counts frozen tensors (bit-identical, not buffers); ``nan`` / ``inf`` count tensors with
    NaN / Inf in the new checkpoint.
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
    rows = make_rows(diffs, classifier)
    groups: dict[tuple[str, str], list[Row]] = {}
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
                frozen=sum(1 for r in rs if found.is_frozen(r)),
                nan=sum(1 for r in rs if r.diff.new_stats and r.diff.new_stats.nan_count),
                inf=sum(1 for r in rs if r.diff.new_stats and r.diff.new_stats.inf_count),
                d2=math.fsum(r.d2 for r in known if r.d2 is not None),
                o2=math.fsum(r.o2 for r in known if r.o2 is not None),
                change=aggregate_change(rs),
            )
        )
    return out
