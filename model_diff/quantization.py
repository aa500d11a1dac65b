"""Judging a comparison as quantization, not training: a GGUF Q4_K_M against its source
safetensors, or Q8_0 against Q4_0.

When one side of a pair is a quantization of the other (``quantized_side``), its differences
are quantization noise: a relative error of a few percent, sign flips of near-zero weights,
exactly kept F32 norms. Training alarms (``large-relative-change``, ``sign-flips``,
``frozen-layers``, the change pattern...) would misread them, so ``analyze_quantization``
replaces them with the terms a quantization is judged in:

* per tensor, the relative error ‖quantized − reference‖ / ‖reference‖ and the cosine of the
  dequantized values with the reference (``reference`` is the higher-precision side);
* the worst tensors by relative error;
* error by quantization type and by layer type (aggregate: √(Σ‖Δ‖² / Σ‖ref‖²));
* insights ``quantization-error`` (the summary) and ``quantization-outliers`` (tensors whose
  error is far above the median of their own type in this pair, e.g. weights with outliers
  that the block scale cannot follow).

This module reads results only (no tensors); ``analysis.DiffAnalyzer`` calls it.
It must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from . import dtypes
from .diff import ChangeType, DiffSummary, ParameterDiff
from .findings import Insight
from .naming import natural_key
from .numbers import fmt_pct

#: Insight codes this module emits (listed in analysis.INSIGHT_CODES and docs/insights.md).
CODES = ("quantization-error", "quantization-outliers")
#: Insight codes that judge training and are dropped when a side is quantized.
TRAINING_CODES = frozenset(
    {
        "frozen-layers",
        "no-change",
        "dtype-changed",
        "low-cosine",
        "large-relative-change",
        "norm-explosion",
        "norm-collapse",
        "sign-flips",
        "low-rank-delta",
        "change-pattern",
    }
)
#: Worst tensors listed.
WORST_K = 10
#: quantization-outliers: relative error at least this multiple of its type's median.
OUTLIER_FACTOR = 3.0

_COMPARED = (ChangeType.MODIFIED, ChangeType.UNCHANGED, ChangeType.DTYPE_CHANGED)
#: GGML block-quantized type names, for results read without the reader that declared them.
_GGML_QUANT = re.compile(r"^(I?Q\d|TQ\d|MXFP\d|NVFP\d)")


def is_quantized_dtype(name: str | None) -> bool:
    """A block-quantized storage type (Q4_K, Q8_0, IQ2_XS, ...)."""
    if name is None:
        return False
    return dtypes.find_quantized(name) is not None or bool(_GGML_QUANT.match(name))


def _bits(name: str | None) -> float | None:
    bits = dtypes.bits_per_element(name)
    if bits is None and is_quantized_dtype(name):
        digits = re.search(r"\d+", name or "")
        bits = float(digits.group(0)) if digits else None
    return bits


def quantized_side(diffs: Sequence[ParameterDiff], summary: DiffSummary) -> str | None:
    """ "old" or "new" when that side is a quantization of the other, else None.

    A side is judged as quantization when some paired tensor changed dtype and that side
    holds block-quantized tensors, or it is a GGUF file (llama.cpp's F16/BF16 conversions
    are file types of the same family). When both qualify, the side with fewer storage bits
    per element (weighted by elements) is the quantized one.
    """
    changed = [d for d in diffs if d.change_type is ChangeType.DTYPE_CHANGED]
    if not changed:
        return None
    paired = [d for d in diffs if d.change_type in _COMPARED]
    score: dict[str, float] = {}
    for side in ("old", "new"):
        names = [getattr(d, f"{side}_dtype") for d in paired]
        fmt = getattr(summary, f"{side}_format")
        if not (any(is_quantized_dtype(n) for n in names) or fmt == "gguf"):
            continue
        total = bits = 0.0
        for d, n in zip(paired, names, strict=True):
            b = _bits(n)
            if b is not None:
                total += d.num_elements
                bits += b * d.num_elements
        score[side] = bits / total if total else math.inf
    if not score:
        return None
    if len(score) == 2 and score["old"] == score["new"]:
        return None
    return min(score, key=lambda s: (score[s], s))


def _record(d: ParameterDiff, side: str) -> dict[str, Any] | None:
    """Relative error and cosine of one pair, against the reference (other) side."""
    ref = d.new_stats if side == "old" else d.old_stats
    ref_norm = ref.norm if ref is not None else None
    if d.change_type is ChangeType.UNCHANGED:
        err: float | None = 0.0 if (ref_norm or 0.0) > 0 else None
        l2: float | None = 0.0
    else:
        l2 = d.l2_diff
        err = l2 / ref_norm if l2 is not None and ref_norm else None
    return {
        "type": getattr(d, f"{side}_dtype"),
        "reference_type": d.new_dtype if side == "old" else d.old_dtype,
        "relative_error": err,
        "cosine": d.cosine_sim,
        "l2": l2,
        "reference_norm": ref_norm,
        "elements": d.num_elements,
        "exact": d.change_type is ChangeType.UNCHANGED,
    }


def _group(records: dict[str, dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    rs = [records[n] for n in names]
    errs = [r["relative_error"] for r in rs if r["relative_error"] is not None]
    cos = [r["cosine"] for r in rs if r["cosine"] is not None]
    num = math.fsum(r["l2"] ** 2 for r in rs if r["l2"] is not None and r["reference_norm"])
    den = math.fsum(
        r["reference_norm"] ** 2 for r in rs if r["l2"] is not None and r["reference_norm"]
    )
    worst = min(
        (n for n in names if records[n]["relative_error"] is not None),
        key=lambda n: (-records[n]["relative_error"], natural_key(n)),
        default=None,
    )
    return {
        "tensors": len(rs),
        "exact": sum(1 for r in rs if r["exact"]),
        "elements": sum(r["elements"] for r in rs),
        "avg_relative_error": math.fsum(errs) / len(errs) if errs else None,
        "median_relative_error": _median(errs),
        "max_relative_error": max(errs, default=None),
        "aggregate_relative_error": math.sqrt(num / den) if den > 0 else None,
        "avg_cosine": math.fsum(cos) / len(cos) if cos else None,
        "min_cosine": min(cos, default=None),
        "worst": worst,
    }


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def analyze_quantization(
    diffs: Sequence[ParameterDiff],
    summary: DiffSummary,
    layer_type: Callable[[str], str],
) -> tuple[dict[str, Any], list[Insight]] | None:
    """(the ``analysis["quantization"]`` section, its insights), or None when neither side
    is a quantization of the other."""
    side = quantized_side(diffs, summary)
    if side is None:
        return None
    records = {d.name: r for d in diffs if d.change_type in _COMPARED and (r := _record(d, side))}
    names = sorted(records, key=natural_key)
    by_type: dict[str, list[str]] = {}
    by_layer: dict[str, list[str]] = {}
    for n in names:
        by_type.setdefault(str(records[n]["type"]), []).append(n)
        by_layer.setdefault(layer_type(n), []).append(n)
    ranked = sorted(
        (n for n in names if records[n]["relative_error"] is not None),
        key=lambda n: (-records[n]["relative_error"], natural_key(n)),
    )
    types = {
        t: {**_group(records, ns), "bits_per_element": _bits(t)}
        for t, ns in sorted(by_type.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    }
    section: dict[str, Any] = {
        "quantized_side": side,
        "reference_side": "new" if side == "old" else "old",
        "overall": _group(records, names),
        "types": types,
        "layer_types": {t: _group(records, ns) for t, ns in sorted(by_layer.items())},
        "worst": [
            {
                "name": n,
                "type": records[n]["type"],
                "relative_error": records[n]["relative_error"],
                "cosine": records[n]["cosine"],
            }
            for n in ranked[:WORST_K]
        ],
        "tensors": {
            n: {k: records[n][k] for k in ("type", "relative_error", "cosine")} for n in names
        },
    }
    return section, _insights(section, records, side)


def _insights(
    section: dict[str, Any], records: dict[str, dict[str, Any]], side: str
) -> list[Insight]:
    overall = section["overall"]
    types = section["types"]
    parts = []
    for t, g in types.items():
        if g["exact"] == g["tensors"]:
            parts.append(f"{t}: {g['tensors']} tensor(s) kept exactly")
        else:
            parts.append(
                f"{t}: {g['tensors']} tensor(s), relative error "
                f"{fmt_pct(g['aggregate_relative_error'])} "
                f"(worst {fmt_pct(g['max_relative_error'])})"
            )
    worst = section["worst"][:3]
    worst_text = ", ".join(f"{w['name']} {fmt_pct(w['relative_error'])}" for w in worst)
    ref = "old" if side == "new" else "new"
    out = [
        Insight(
            code="quantization-error",
            severity="info",
            category="quantization",
            title=f"The {side} side is a quantization of the {ref} side: relative error "
            f"{fmt_pct(overall['aggregate_relative_error'])} overall",
            description=f"Judged as quantization, not training (training alarms are off). "
            f"{'; '.join(parts)}. Worst tensors: {worst_text or 'none'}. Cosine of the "
            f"dequantized weights with the reference: min {overall['min_cosine']:.6f}."
            if overall["min_cosine"] is not None
            else f"Judged as quantization, not training. {'; '.join(parts)}.",
            evidence={
                "tensors": [w["name"] for w in section["worst"]],
                "quantized_side": side,
                "relative_error": overall["aggregate_relative_error"],
                "by_type": {t: g["aggregate_relative_error"] for t, g in types.items()},
            },
        )
    ]
    outliers: dict[str, float] = {}
    for t, g in types.items():
        median = g["median_relative_error"]
        if not median or g["tensors"] < 3:
            continue
        for n, r in records.items():
            e = r["relative_error"]
            if str(r["type"]) == t and e is not None and e >= OUTLIER_FACTOR * median:
                outliers[n] = e
    if outliers:
        names = sorted(outliers, key=natural_key)
        shown = ", ".join(f"{n} {fmt_pct(outliers[n])}" for n in names[:8])
        out.append(
            Insight(
                code="quantization-outliers",
                severity="warning",
                category="quantization",
                title=f"{len(names)} tensor(s) lost much more precision than others of their type",
                description=f"Relative error at least {OUTLIER_FACTOR:g}x the median of "
                f"the tensor's quantization type in this pair: {shown}"
                f"{' and more' if len(names) > 8 else ''}. Such tensors (often with outlier "
                f"weights) are candidates for a higher-precision type.",
                evidence={
                    "tensors": names,
                    "relative_error": outliers,
                    "factor": OUTLIER_FACTOR,
                },
            )
        )
    return out
