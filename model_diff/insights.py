"""The analyzer's individual findings, one function per insight code (docs/insights.md).

Each builder takes the pair's ``Row``s (and what else it needs: the summary, a threshold)
and returns a list of ``findings.Insight`` (empty when the finding does not apply). The
thresholds come from ``AnalysisConfig``, set by a policy when one is in force; nothing here
knows about policies, levels or exit codes. ``DiffAnalyzer`` calls these in a fixed order.

Frozen means a trainable tensor (``rows.Row.buffer`` False: not an integer/bool tensor nor a
known buffer such as rotary ``inv_freq`` or BatchNorm running statistics) that is
bit-identical in both checkpoints while others changed. Rules kept here: undefined metrics
(None) never trigger a finding; descriptions round, evidence keeps numbers unrounded and lists
every tensor. This module reads results only: no tensors, no printing, no click/torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from . import layers
from .diff import ChangeType, DiffSummary
from .findings import Insight, describe_names
from .name_groups import block_runs, describe_groups
from .naming import natural_key, natural_sorted
from .numbers import fmt_cos, fmt_float, fmt_fold, fmt_pct
from .rows import COMPARED, Row

__all__ = [
    "CHECKS",
    "LOW_RANK_FRACTION",
    "SIGN_FLIP_WARN",
    "architecture_insights",
    "frozen_insight",
    "frozen_names",
    "health_insights",
    "is_allowed_frozen",
    "is_frozen",
    "large_change_insight",
    "low_cosine_insight",
    "low_rank_insight",
    "nonfinite_insight",
    "norm_insights",
    "sign_flip_insight",
    "tied_insight",
    "unchecked_insight",
]

#: sign-flips insight: fraction of elements whose sign flipped.
SIGN_FLIP_WARN = 0.25
#: low-rank-delta insight: the delta's 99%-energy rank is at most this fraction of min(m, n).
LOW_RANK_FRACTION = 0.25
#: Codes of the checkpoint-level checks (a file's readable, finite tensors), made for a pair
#: and for a single file alike.
CHECKS = ("nonfinite-values", "unchecked-tensors")


def _types(rows: Sequence[Row]) -> dict[str, str]:
    """Every tensor of the pair and its layer type (what tensor lists are grouped against)."""
    return {r.name: r.layer_type for r in rows}


def _changed(rows: Sequence[Row]) -> list[Row]:
    """Changed trainable tensors whose two sides were compared element-wise (a buffer is
    not trained: its change is no training signal)."""
    return [
        r for r in rows if r.diff.change_type in COMPARED and r.diff.is_changed and not r.buffer
    ]


# -- NaN/Inf and unreadable tensors ----------------------------------------------------------
def nonfinite_insight(rows: Sequence[Row], summary: DiffSummary) -> list[Insight]:
    """NaN/Inf in the new checkpoint: which appeared, which were there already."""
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
    types = _types(rows)

    def spell(n: str) -> str:
        return _counted(n, counts)

    parts = []
    if new:
        parts.append(f"NaN/Inf appeared in {describe_groups(new, types, spell)}")
    if pre:
        shown = describe_groups(pre, types, spell)
        parts.append(f"already present in the old checkpoint in {shown}")
    return [
        Insight(
            "nonfinite-values",
            "critical",
            "stability",
            f"NaN/Inf in {len(names)} tensor(s) of the new checkpoint",
            "; ".join(parts) + ". Training diverged or the checkpoint is corrupt.",
            {
                "tensors": names,
                "appeared": new,
                "preexisting": pre,
                "nan": sum(c["nan"] or 0 for c in counts.values()),
                "inf": sum(c["inf"] or 0 for c in counts.values()),
                "counts": counts,
            },
        )
    ]


def _counted(name: str, counts: Mapping[str, Mapping[str, int | None]]) -> str:
    """``name (3 NaN 1 Inf)`` (the name alone when its counts are unknown)."""
    c = counts.get(name) or {}
    what = " ".join(f"{c[k]} {w}" for k, w in (("nan", "NaN"), ("inf", "Inf")) if c.get(k))
    return f"{name} ({what})" if what else name


def health_insights(
    counts: Mapping[str, tuple[int, int]], unchecked: Mapping[str, str]
) -> list[Insight]:
    """The checks of one checkpoint without a base: NaN/Inf per tensor ((nan, inf) counts by
    name) and the tensors that could not be read."""
    bad = natural_sorted(n for n, (nan, inf) in counts.items() if nan or inf)
    out = []
    if bad:
        per = {n: {"nan": counts[n][0], "inf": counts[n][1]} for n in bad}
        types = {n: layers.classify_layer(n) for n in counts}
        shown = describe_groups(bad, types, lambda n: _counted(n, per))
        total_nan = sum(counts[n][0] for n in bad)
        total_inf = sum(counts[n][1] for n in bad)
        out.append(
            Insight(
                "nonfinite-values",
                "critical",
                "stability",
                f"NaN/Inf in {len(bad)} tensor(s)",
                f"NaN/Inf values ({total_nan} NaN, {total_inf} Inf) in {shown}.",
                {
                    "tensors": bad,
                    "nan": total_nan,
                    "inf": total_inf,
                    "counts": per,
                },
            )
        )
    return out + unchecked_insight(unchecked)


def unchecked_insight(unchecked: Mapping[str, str]) -> list[Insight]:
    """Tensors the new checkpoint holds but model-diff cannot read (complex, sparse, ...):
    neither NaN/Inf nor changes are checked in them, and that is never passed over."""
    if not unchecked:
        return []
    names = natural_sorted(unchecked)
    shown = [f"{n} ({unchecked[n]})" for n in names]
    return [
        Insight(
            "unchecked-tensors",
            "warning",
            "stability",
            f"{len(names)} tensor(s) model-diff cannot check",
            f"{len(names)} tensor(s) not checked (neither NaN/Inf nor changes): "
            f"{describe_names(shown)}.",
            {"tensors": names, "reasons": {n: unchecked[n] for n in names}},
        )
    ]


# -- frozen tensors --------------------------------------------------------------------------
def is_allowed_frozen(name: str, allowed: Sequence[str]) -> bool:
    """Whether ``name`` matches one of the ``allowed`` fnmatch globs (expected to stay)."""
    return any(fnmatchcase(name, g) for g in allowed)


def is_frozen(r: Row) -> bool:
    """A trainable tensor that stayed bit-identical (buffers and empty tensors never are)."""
    return r.diff.change_type is ChangeType.UNCHANGED and not r.buffer and r.diff.num_elements > 0


def frozen_insight(
    rows: Sequence[Row],
    summary: DiffSummary,
    allowed: Sequence[str] = (),
    unlisted: Sequence[str] = (),
) -> list[Insight]:
    """``no-change`` when nothing changed, else ``frozen-layers`` for the frozen tensors that
    no ``allowed`` glob expects to stay, grouped by block (whole frozen blocks merged).

    ``unlisted`` names unchanged tensors whose records the diff left out
    (``include_unchanged=False``; ``DiffSummary.unchanged_tensors``): they are judged by
    name alone (a buffer by ``layers.BUFFER_GLOBS``; an integer dtype cannot be seen).
    """
    total = summary.total_parameters
    # renamed tensors (same bytes) and tied duplicates are no change of content
    renamed, tied = summary.renamed_parameters, summary.tied_parameters
    if summary.unchanged_parameters + renamed == 0:
        return []
    if summary.unchanged_parameters + renamed + tied == total:
        paired = [f"{renamed} under a new name"] if renamed else []
        paired += [f"{tied} tied duplicate(s) on one side only"] if tied else []
        return [
            Insight(
                "no-change",
                "info",
                "training",
                "No tensor changed",
                f"All {total - tied} tensors are bit-identical in both checkpoints"
                + (f" ({', '.join(paired)})." if paired else "."),
                {"tensors": [], "count": total - tied},
            )
        ]
    if summary.unchanged_parameters == 0:
        return []
    total -= tied  # a tied duplicate is not a tensor of its own
    listed = sum(1 for r in rows if r.diff.change_type is ChangeType.UNCHANGED)
    if listed + len(unlisted) < summary.unchanged_parameters:
        count = summary.unchanged_parameters
        return [
            Insight(
                "frozen-layers",
                "info",
                "training",
                f"{count} of {total} tensors unchanged (bit-identical)",
                f"{count} tensors are exactly unchanged; their names were not given, so frozen "
                f"weights cannot be told from buffers (diff with include_unchanged=True, as "
                f"`model-diff compare` does, to see which).",
                {
                    "tensors": [],
                    "count": count,
                    "total": total,
                    "names_listed": False,
                    "groups": [],
                },
            )
        ]
    # Every name, listed or not, placed in its block (one layout over all of them).
    layout = layers.block_layout([*(r.name for r in rows), *unlisted])

    def unit(name: str) -> tuple[str, layers.BlockInfo | None]:
        pos = layers.block_position(name)
        block = layout.get(pos.label) if pos is not None else None
        return (block.label if block is not None else name), block

    trainable = [r.name for r in rows if not r.buffer]
    frozen = [r.name for r in rows if is_frozen(r)]
    extra = [n for n in unlisted if not layers.is_buffer(n)]
    trainable += extra
    frozen = natural_sorted([*frozen, *extra])
    buffers = natural_sorted(
        [r.name for r in rows if r.buffer and r.diff.change_type is ChangeType.UNCHANGED]
        + [n for n in unlisted if layers.is_buffer(n)]
    )
    allowed_names = [n for n in frozen if is_allowed_frozen(n, allowed)]
    reported = [n for n in frozen if not is_allowed_frozen(n, allowed)]
    if not reported:
        return []
    members: dict[str, int] = {}
    for n in trainable:
        label = unit(n)[0]
        members[label] = members.get(label, 0) + 1
    groups: dict[str, list[str]] = {}
    blocks: dict[str, layers.BlockInfo | None] = {}
    for n in reported:
        label, block = unit(n)
        groups.setdefault(label, []).append(n)
        blocks[label] = block
    group_ev: list[dict[str, Any]] = [
        {"group": g, "frozen": len(groups[g]), "total": members[g], "tensors": groups[g]}
        for g in natural_sorted(groups)
    ]
    whole = [g for g in group_ev if g["frozen"] == g["total"] and blocks[g["group"]]]
    parts = block_runs([b for g in whole if (b := blocks[g["group"]]) is not None])
    for g in group_ev:
        if g in whole:
            continue
        parts.append(
            g["group"]
            if blocks[g["group"]] is None
            else f"{g['group']} ({g['frozen']} of {g['total']} tensors)"
        )
    changed = total - summary.unchanged_parameters - renamed
    note = ""
    if allowed_names:
        note = f" {len(allowed_names)} more frozen as allowed ({describe_names(list(allowed))})."
    return [
        Insight(
            "frozen-layers",
            "info",
            "training",
            f"{len(reported)} of {total} tensors frozen (bit-identical)",
            f"{len(reported)} tensor(s) exactly unchanged while {changed} other(s) changed: "
            f"{describe_names(parts)}.{note}",
            {
                "tensors": reported,
                "count": len(reported),
                "total": total,
                "changed": changed,
                "names_listed": True,
                "whole_blocks": [g["group"] for g in whole],
                "groups": group_ev,
                "allowed": allowed_names,
                "buffers": buffers,
            },
        )
    ]


def frozen_names(rows: Sequence[Row], unlisted: Sequence[str] = ()) -> list[str]:
    """Every frozen tensor (allowed ones included): listed rows by ``is_frozen``, unlisted
    unchanged names unless their name marks a buffer."""
    names = [r.name for r in rows if is_frozen(r)]
    return natural_sorted([*names, *(n for n in unlisted if not layers.is_buffer(n))])


# -- architecture ----------------------------------------------------------------------------
def architecture_insights(rows: Sequence[Row], summary: DiffSummary) -> list[Insight]:
    """Tensors added or removed, reshaped, or recast."""
    out = []
    added = [r.name for r in rows if r.diff.change_type is ChangeType.ADDED]
    removed = [r.name for r in rows if r.diff.change_type is ChangeType.REMOVED]
    n_add = max(len(added), summary.added_parameters)
    n_rem = max(len(removed), summary.removed_parameters)
    if n_add or n_rem:
        parts = []
        if n_add:
            parts.append(f"added {n_add}: {describe_groups(added, _types(rows))}")
        if n_rem:
            parts.append(f"removed {n_rem}: {describe_groups(removed, _types(rows))}")
        out.append(
            Insight(
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
        out.append(_shape_insight(shaped))
    dtyped = [r for r in rows if r.diff.change_type is ChangeType.DTYPE_CHANGED]
    if dtyped:
        conv: dict[str, list[str]] = {}
        for r in dtyped:
            conv.setdefault(f"{r.diff.old_dtype} -> {r.diff.new_dtype}", []).append(r.name)
        desc = "; ".join(
            f"{k}: {len(v)} tensor(s) ({describe_names(v)})" for k, v in sorted(conv.items())
        )
        out.append(
            Insight(
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


def _shape_insight(shaped: Sequence[Row]) -> Insight:
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
                f"the {d.overlap_rows} kept rows changed by {fmt_pct(d.relative_change)})"
            )
        else:
            parts.append(f"{r.name} {old_s} -> {new_s}")
    shown = "; ".join(parts[:8])
    if len(parts) > 8:
        shown += f"; and {len(parts) - 8} more"
    return Insight(
        "shape-changed",
        "warning",
        "architecture",
        f"{len(shaped)} tensor(s) changed shape",
        shown + ".",
        {"tensors": [r.name for r in shaped], "shapes": details},
    )


# -- how much and which way tensors moved ----------------------------------------------------
def low_cosine_insight(rows: Sequence[Row], threshold: float) -> list[Insight]:
    """Changed tensors whose cosine similarity to their old value is below ``threshold``."""
    low = [
        r for r in _changed(rows) if r.diff.cosine_sim is not None and r.diff.cosine_sim < threshold
    ]
    if not low:
        return []
    names = [r.name for r in low]
    worst = min(low, key=lambda r: (r.diff.cosine_sim or 0.0, natural_key(r.name)))
    return [
        Insight(
            "low-cosine",
            "warning",
            "stability",
            f"{len(low)} tensor(s) changed direction (cosine < {fmt_float(threshold)})",
            f"Cosine similarity between old and new fell below {fmt_float(threshold)} for "
            f"{describe_groups(names, _types(rows))}; lowest "
            f"{fmt_cos(worst.diff.cosine_sim)} ({worst.name}). "
            f"Such tensors were largely rewritten: check the learning rate or whether they "
            f"were re-initialised.",
            {
                "tensors": names,
                "cosine_sim": {r.name: r.diff.cosine_sim for r in low},
                "min": worst.diff.cosine_sim,
                "threshold": threshold,
            },
        )
    ]


def large_change_insight(rows: Sequence[Row], threshold: float) -> list[Insight]:
    """Changed tensors with ||new - old|| / ||old|| at or above ``threshold``."""
    large = [r for r in _changed(rows) if r.change is not None and r.change >= threshold]
    if not large:
        return []
    names = [r.name for r in large]
    top = max(large, key=lambda r: r.change or 0.0)  # first in name order on ties
    return [
        Insight(
            "large-relative-change",
            "warning",
            "training",
            f"{len(large)} tensor(s) changed by >= {fmt_pct(threshold)} of their norm",
            f"||new - old|| / ||old|| reached {fmt_float(threshold)} or more for "
            f"{describe_groups(names, _types(rows))}; largest {fmt_pct(top.change)} "
            f"({top.name}).",
            {
                "tensors": names,
                "relative_change": {r.name: r.change for r in large},
                "max": top.change,
                "threshold": threshold,
            },
        )
    ]


def norm_insights(rows: Sequence[Row], threshold: float) -> list[Insight]:
    """Tensors whose norm grew (``norm-explosion``) or shrank (``norm-collapse``) by
    ``threshold`` times or more."""
    up: dict[str, float] = {}
    down: dict[str, float] = {}
    for r in _changed(rows):
        if r.diff.change_type is ChangeType.SHAPE_CHANGED and r.diff.overlap_rows is None:
            continue  # norms of tensors of different shapes (not a vocabulary resize)
        o, n = r.diff.old_norm, r.diff.new_norm
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
            Insight(
                code,
                "warning",
                "stability",
                f"{len(names)} tensor(s) {word} in norm by {fmt_fold(threshold)} or more",
                f"||new|| / ||old|| {'>=' if code == 'norm-explosion' else '<='} "
                f"{fmt_float(threshold if code == 'norm-explosion' else 1 / threshold)} for "
                f"{describe_groups(names, _types(rows))} (most extreme {fmt_fold(extreme)}).",
                {
                    "tensors": names,
                    "norm_ratio": {n: sel[n] for n in names},
                    "threshold": threshold,
                },
            )
        )
    return out


def sign_flip_insight(rows: Sequence[Row]) -> list[Insight]:
    """Tensors where at least ``SIGN_FLIP_WARN`` of the elements flipped sign."""
    flips = [
        r
        for r in _changed(rows)
        if r.diff.sign_flip_ratio is not None and r.diff.sign_flip_ratio >= SIGN_FLIP_WARN
    ]
    if not flips:
        return []
    names = [r.name for r in flips]
    return [
        Insight(
            "sign-flips",
            "warning",
            "stability",
            f"{len(flips)} tensor(s) flipped the sign of >= {SIGN_FLIP_WARN:.0%} of elements",
            f"Sign flips on a large share of elements in {describe_groups(names, _types(rows))}: "
            f"a fine-tune "
            f"flips few signs; about half flipped means the tensor was re-initialised.",
            {
                "tensors": names,
                "sign_flip_ratio": {r.name: r.diff.sign_flip_ratio for r in flips},
                "threshold": SIGN_FLIP_WARN,
            },
        )
    ]


def low_rank_insight(rows: Sequence[Row]) -> list[Insight]:
    """2-D updates whose 99% energy rank is at most ``LOW_RANK_FRACTION`` of min(m, n)."""
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
        Insight(
            "low-rank-delta",
            "info",
            "structure",
            f"{len(names)} weight update(s) are low-rank (LoRA-extractable)",
            f"99% of the update's energy lies in rank {ranks[0]}"
            f"{'' if len(ranks) == 1 else f' to {ranks[-1]}'} for "
            f"{describe_groups(names, _types(rows))}: the "
            f"change could be stored as a LoRA adapter of that rank.",
            {
                "tensors": names,
                "rank_99": {n: hits[n]["rank_99"] for n in names},
                "rank_90": {n: hits[n]["rank_90"] for n in names},
            },
        )
    ]


def tied_insight(tied: Sequence[Mapping[str, Any]]) -> list[Insight]:
    """Embedding/head pairs that look tied (``analysis.find_tied_candidates``)."""
    if not tied:
        return []
    pairs = [f"{t['embedding']} = {t['head']}" for t in tied]
    confirmed = all(t["confirmed"] for t in tied)
    return [
        Insight(
            "tied-weights",
            "info",
            "architecture",
            f"{len(tied)} embedding/head pair(s) look tied",
            f"{'; '.join(pairs)}: identical "
            f"{'contents' if confirmed else 'shape and statistics on both sides'}, so "
            f"they are one set of weights (their changes are one change)"
            f"{'' if confirmed else '; pass the checkpoints to confirm bytes'}.",
            {
                "tensors": natural_sorted({n for t in tied for n in (t["embedding"], t["head"])}),
                "pairs": list(tied),
            },
        )
    ]
