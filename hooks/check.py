"""Judging a diff against a policy: ``evaluate`` and ``evaluate_health`` -> ``Violation`` list.

Pure functions over the engine's results (``ParameterDiff`` records, ``DiffSummary``, the
analysis dict, ``TensorInfo``): no file or git I/O, no printing, no exit codes. The same
inputs give the same violations in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_diff.checkpoint import TensorInfo
from model_diff.diff import ChangeType, DiffSummary, ParameterDiff
from model_diff.naming import natural_sorted

from .policy import Policy

#: Codes ``evaluate`` computes itself from the per-tensor diffs, with the policy's thresholds.
#: Analyzer insights with these codes are not re-reported (the policy's numbers win).
OWN_CODES = frozenset(
    {
        "nonfinite-values",
        "frozen-layers",
        "low-cosine",
        "large-relative-change",
        "architecture-changed",
        "shape-changed",
        "dtype-changed",
    }
)

#: Worst first among violations of the same level (output order, annotation priority).
CODE_RANK = {
    "nonfinite-values": 0,
    "unchecked-tensors": 0,
    "frozen-layers": 1,
    "low-cosine": 2,
    "large-relative-change": 3,
    "norm-explosion": 4,
    "norm-collapse": 5,
    "architecture-changed": 6,
    "shape-changed": 7,
    "dtype-changed": 8,
}
_INSIGHT_LEVEL = {"critical": "error", "warning": "warning", "info": "ignore"}
_FLOAT_DTYPES = ("float", "bfloat", "half", "double")
#: Tensor names shown in one message before "and N more".
SHOWN_TENSORS = 5


@dataclass(frozen=True)
class Violation:
    """One policy finding about one checkpoint: a code, a level and the tensors involved."""

    code: str
    level: str  # "error" | "warning"
    title: str
    message: str
    tensors: tuple[str, ...] = ()
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "level": self.level,
            "title": self.title,
            "message": self.message,
            "tensors": list(self.tensors),
            "numbers": {k: _json_number(v) for k, v in self.numbers.items()},
        }


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {k: _json_number(x) for k, x in v.items()}
    return v


def name_list(names: Sequence[str], shown: int = SHOWN_TENSORS) -> str:
    """``a, b, c and 4 more``: the first ``shown`` names, then a count."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _is_float(dtype: str | None) -> bool:
    return dtype is not None and dtype.startswith(_FLOAT_DTYPES)


def _emit(out: list[Violation], policy: Policy, code: str, **kw: Any) -> None:
    level = policy.level(code)
    if level != "ignore":
        out.append(Violation(code=code, level=level, **kw))


def _nonfinite(named_counts: Sequence[tuple[str, int, int]]) -> dict[str, Any] | None:
    """Fields of a nonfinite-values violation from (name, nan, inf) rows (None if clean)."""
    rows = [(n, nan, inf) for n, nan, inf in named_counts if nan or inf]
    if not rows:
        return None
    parts = []
    for n, nan, inf in rows:
        counts = " ".join(f"{c} {k}" for c, k in ((nan, "NaN"), (inf, "Inf")) if c)
        parts.append(f"{n} ({counts})")
    total_nan = sum(r[1] for r in rows)
    total_inf = sum(r[2] for r in rows)
    return dict(
        title=f"NaN/Inf values in {len(rows)} tensor{'s' if len(rows) != 1 else ''}",
        message=f"NaN/Inf values ({total_nan} NaN, {total_inf} Inf) in {len(rows)} tensor(s): "
        f"{name_list(parts)}",
        tensors=tuple(r[0] for r in rows),
        numbers={
            "nan": total_nan,
            "inf": total_inf,
            "per_tensor": {n: {"nan": nan, "inf": inf} for n, nan, inf in rows},
        },
    )


def evaluate(
    diffs: Sequence[ParameterDiff],
    summary: DiffSummary,
    analysis: Mapping[str, Any] | None,
    policy: Policy,
) -> list[Violation]:
    """The violations of one checkpoint pair under ``policy``, errors first.

    ``diffs`` must include unchanged tensors (``DiffConfig(include_unchanged=True)``):
    frozen tensors are exactly the unchanged ones, and they have to be named.
    """
    if len(diffs) != summary.total_parameters:
        raise ValueError("evaluate() needs every tensor pair: diff with include_unchanged=True")
    out: list[Violation] = []

    nf = _nonfinite(
        [
            (d.name, d.new_stats.nan_count, d.new_stats.inf_count)
            for d in diffs
            if d.new_stats is not None
        ]
    )
    if nf is not None:
        out.append(Violation(code="nonfinite-values", level="error", **nf))  # always fails

    changed = [d for d in diffs if d.is_changed]
    if changed:
        # A float tensor that stayed bit-identical while others moved: a layer that silently
        # stopped training (requires_grad lost, param group dropped, optimizer mis-built).
        frozen = [
            d.name
            for d in diffs
            if d.change_type is ChangeType.UNCHANGED
            and d.num_elements > 0
            and _is_float(d.new_dtype)
            and not policy.is_frozen_allowed(d.name)
        ]
        if frozen:
            _emit(
                out,
                policy,
                "frozen-layers",
                title=f"{len(frozen)} frozen tensor{'s' if len(frozen) != 1 else ''}",
                message=f"{len(frozen)} tensor(s) did not change while {len(changed)} others "
                f"did: {name_list(frozen)} (if intended, add globs to allow_frozen)",
                tensors=tuple(frozen),
                numbers={"frozen": len(frozen), "changed": len(changed)},
            )

    finite = [d for d in changed if d.nonfinite_new == 0 and d.nonfinite_old == 0]
    low = [d for d in finite if d.cosine_sim is not None and d.cosine_sim < policy.min_cosine]
    if low:
        low.sort(key=lambda d: (d.cosine_sim or 0.0, d.name))
        _emit(
            out,
            policy,
            "low-cosine",
            title=f"cosine similarity below {policy.min_cosine:g} in {len(low)} tensor(s)",
            message=f"cosine similarity old->new below min_cosine={policy.min_cosine:g}: "
            + name_list([f"{d.name} (cos={_fmt(d.cosine_sim)})" for d in low]),
            tensors=tuple(d.name for d in low),
            numbers={
                "min_cosine": policy.min_cosine,
                "cosine": {d.name: d.cosine_sim for d in low},
            },
        )
    big = [
        d
        for d in finite
        if d.relative_change is not None and d.relative_change > policy.max_relative_change
    ]
    if big:
        big.sort(key=lambda d: (-(d.relative_change or 0.0), d.name))
        _emit(
            out,
            policy,
            "large-relative-change",
            title=f"relative change above {policy.max_relative_change:g} in {len(big)} tensor(s)",
            message="||new-old||/||old|| above max_relative_change="
            f"{policy.max_relative_change:g}: "
            + name_list([f"{d.name} ({_fmt(d.relative_change)})" for d in big]),
            tensors=tuple(d.name for d in big),
            numbers={
                "max_relative_change": policy.max_relative_change,
                "relative_change": {d.name: d.relative_change for d in big},
            },
        )

    added = [d.name for d in diffs if d.change_type is ChangeType.ADDED]
    removed = [d.name for d in diffs if d.change_type is ChangeType.REMOVED]
    if added or removed:
        parts = []
        if added:
            parts.append(f"{len(added)} added: {name_list(added)}")
        if removed:
            parts.append(f"{len(removed)} removed: {name_list(removed)}")
        _emit(
            out,
            policy,
            "architecture-changed",
            title=f"architecture changed ({len(added)} added, {len(removed)} removed)",
            message="tensors " + "; ".join(parts),
            tensors=tuple(added + removed),
            numbers={"added": len(added), "removed": len(removed)},
        )
    reshaped = [d for d in diffs if d.change_type is ChangeType.SHAPE_CHANGED]
    if reshaped:
        _emit(
            out,
            policy,
            "shape-changed",
            title=f"shape changed in {len(reshaped)} tensor(s)",
            message="shape changed: "
            + name_list(
                [f"{d.name} {_shape(d.old_shape)} -> {_shape(d.new_shape)}" for d in reshaped]
            ),
            tensors=tuple(d.name for d in reshaped),
            numbers={"count": len(reshaped)},
        )
    recast = [d for d in diffs if d.change_type is ChangeType.DTYPE_CHANGED]
    if recast:
        _emit(
            out,
            policy,
            "dtype-changed",
            title=f"dtype changed in {len(recast)} tensor(s)",
            message="dtype changed: "
            + name_list([f"{d.name} {d.old_dtype} -> {d.new_dtype}" for d in recast]),
            tensors=tuple(d.name for d in recast),
            numbers={"count": len(recast)},
        )

    out.extend(_from_insights((analysis or {}).get("insights", ()), policy))
    return sort_violations(out)


def _shape(s: tuple[int, ...] | None) -> str:
    return "[" + ", ".join(str(x) for x in s) + "]" if s is not None else "-"


def _from_insights(insights: Iterable[Mapping[str, Any]], policy: Policy) -> list[Violation]:
    """Violations from analyzer insights whose codes the policy does not compute itself."""
    out = []
    for ins in insights:
        code = str(ins.get("code", ""))
        if not code or code in OWN_CODES:
            continue
        level = policy.level(code, _INSIGHT_LEVEL.get(str(ins.get("severity")), "warning"))
        if level == "ignore":
            continue
        evidence = ins.get("evidence") or {}
        tensors = tuple(str(t) for t in evidence.get("tensors", ()))
        numbers = {
            k: v
            for k, v in evidence.items()
            if k != "tensors" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        message = str(ins.get("description") or ins.get("title") or code)
        if tensors and not any(t in message for t in tensors[:1]):
            message = f"{message}: {name_list(list(tensors))}"
        out.append(
            Violation(
                code=code,
                level=level,
                title=str(ins.get("title") or code),
                message=message,
                tensors=tensors,
                numbers=numbers,
            )
        )
    return out


def evaluate_health(
    infos: Mapping[str, TensorInfo],
    unchecked: Mapping[str, str] | None = None,
    policy: Policy | None = None,
) -> list[Violation]:
    """Single-file findings (no base to compare with): NaN/Inf values in any tensor, and
    tensors that could not be checked at all (``Checkpoint.unchecked``)."""
    nf = _nonfinite(
        [(n, i.nan_count, i.inf_count) for n, i in ((n, infos[n]) for n in natural_sorted(infos))]
    )
    out = [] if nf is None else [Violation(code="nonfinite-values", level="error", **nf)]
    return out + evaluate_unchecked(unchecked or {}, policy or Policy())


def evaluate_unchecked(unchecked: Mapping[str, str], policy: Policy) -> list[Violation]:
    """Tensors the file holds but model-diff cannot read (complex, sparse, quantized ...):
    never silently passed over. Level ``error`` unless the policy says otherwise."""
    if not unchecked:
        return []
    out: list[Violation] = []
    names = natural_sorted(unchecked)
    shown = [f"{n} ({unchecked[n]})" for n in names]
    _emit(
        out,
        policy,
        "unchecked-tensors",
        title=f"{len(names)} tensor{'s' if len(names) != 1 else ''} model-diff cannot check",
        message=f"{len(names)} tensor(s) not checked (neither NaN/Inf nor changes): "
        f"{name_list(shown)}",
        tensors=tuple(names),
        numbers={"reasons": {n: unchecked[n] for n in names}},
    )
    return out


def sort_violations(vs: Iterable[Violation]) -> list[Violation]:
    """Errors before warnings, worst code first: a stable order for output."""
    return sorted(vs, key=lambda v: (v.level != "error", CODE_RANK.get(v.code, 50), v.code))


def fails(violations: Iterable[Violation], fail_on: str) -> bool:
    """Whether ``violations`` fail a check run with ``--fail-on fail_on``."""
    if fail_on == "never":
        return False
    levels = {"error"} if fail_on == "error" else {"error", "warning"}
    return any(v.level in levels for v in violations)
