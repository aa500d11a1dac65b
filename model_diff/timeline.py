"""How training moved each block across a sequence of checkpoints (``model-diff timeline``).

``compare_training_stages([c0, c1, c2, ...])`` diffs each consecutive pair (unchanged tensors
included, no low-rank pass), analyses it, and returns per-step patterns and insight codes plus,
for every block and every layer group outside blocks, its aggregate relative change
sqrt(sum ||delta||^2 / sum ||old||^2) at each step and a trend. ``render_timeline_text`` and
``render_timeline_json`` format it. At most two checkpoints are open at a time.

This module must not print, exit, or import click/torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from . import layers
from .analysis import AnalysisConfig, DiffAnalyzer, Row, aggregate_change, make_rows
from .checkpoint import Checkpoint
from .diff import DiffConfig, ModelDiff
from .errors import ModelDiffError
from .terminal import guard_json, guard_lines, printable

#: A row's trend: last step vs first step ratio beyond this is "rising" / "falling".
TREND_RATIO = 1.5

Spec = str | os.PathLike[str] | Checkpoint
Opener = Callable[[Spec], Checkpoint]


def _default_opener(spec: Spec) -> Checkpoint:
    if isinstance(spec, Checkpoint):
        return spec
    from .formats import open_checkpoint  # formats only when a path is given

    return open_checkpoint(spec)


def _label(spec: Spec) -> str:
    return spec.path if isinstance(spec, Checkpoint) else os.fspath(spec)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _group_key(r: Row) -> tuple[str, str]:
    """(row label, kind): a block, or a layer type for tensors outside blocks."""
    if r.block is not None:
        return r.block.label, "block"
    return r.layer_type, "outside_blocks"


def compare_training_stages(
    checkpoints: Sequence[Spec],
    *,
    labels: Sequence[str] | None = None,
    diff_config: DiffConfig | None = None,
    analysis_config: AnalysisConfig | None = None,
    opener: Opener | None = None,
) -> dict[str, Any]:
    """Diff and analyse each consecutive pair of ``checkpoints`` (paths or Checkpoints).

    ``labels`` name the checkpoints in the output (default: the paths as given);
    ``opener`` opens a path (default: ``formats.open_checkpoint``); ``diff_config`` is used
    with ``include_unchanged=True`` and ``low_rank=False`` forced (frozen blocks must be seen;
    the low-rank pass is per-pair detail the timeline does not show).
    """
    if len(checkpoints) < 2:
        raise ModelDiffError(
            f"timeline needs at least two checkpoints, got {len(checkpoints)}",
            hint="pass them in training order: ckpt1 ckpt2 ckpt3 ...",
        )
    names = list(labels) if labels is not None else [_label(c) for c in checkpoints]
    if len(names) != len(checkpoints):
        raise ValueError("labels must name every checkpoint")
    config = dataclasses.replace(
        diff_config or DiffConfig(), include_unchanged=True, low_rank=False
    )
    analyzer = DiffAnalyzer(analysis_config)
    open_ = opener or _default_opener
    steps: list[dict[str, Any]] = []
    per_step: list[dict[tuple[str, str], float | None]] = []
    per_type: list[dict[str, float | None]] = []
    all_names: set[str] = set()
    prev_spec = checkpoints[0]
    prev = open_(prev_spec)
    try:
        for i in range(1, len(checkpoints)):
            cur_spec = checkpoints[i]
            cur = open_(cur_spec)
            try:
                diffs, summary = ModelDiff(config).diff(prev, cur)
            except BaseException:
                _close(cur, cur_spec)
                raise
            finally:
                _close(prev, prev_spec)  # at most two checkpoints open at a time
            prev, prev_spec = cur, cur_spec
            analysis = analyzer.analyze(diffs, summary)
            rows = make_rows(diffs, analyzer.classifier)
            all_names.update(d.name for d in diffs)
            groups: dict[tuple[str, str], list[Row]] = {}
            types: dict[str, list[Row]] = {}
            for r in rows:
                groups.setdefault(_group_key(r), []).append(r)
                types.setdefault(r.layer_type, []).append(r)
            per_step.append({k: aggregate_change(v) for k, v in groups.items()})
            per_type.append({k: aggregate_change(v) for k, v in types.items()})
            steps.append(
                {
                    "step": i,
                    "from": names[i - 1],
                    "to": names[i],
                    "change_pattern": analysis["change_pattern"],
                    "aggregate_change": aggregate_change(rows),
                    "changed": summary.changed_parameters,
                    "unchanged": summary.unchanged_parameters,
                    "added": summary.added_parameters,
                    "removed": summary.removed_parameters,
                    "avg_relative_change": _finite(summary.avg_relative_change),
                    "insights": [
                        {"code": x["code"], "severity": x["severity"], "title": x["title"]}
                        for x in analysis["insights"]
                    ],
                }
            )
    finally:
        _close(prev, prev_spec)
    return {
        "checkpoints": names,
        "steps": steps,
        "rows": _rows(all_names, per_step),
        "layer_types": _type_series(per_type),
    }


def _close(ckpt: Checkpoint, spec: Spec) -> None:
    if not isinstance(spec, Checkpoint):  # close only what we opened
        ckpt.close()


def _rows(
    names: set[str], per_step: list[dict[tuple[str, str], float | None]]
) -> list[dict[str, Any]]:
    layout = layers.block_layout(names)
    keys = {k for step in per_step for k in step}
    type_order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}

    def order(k: tuple[str, str]) -> tuple[int, int, str]:
        label, kind = k
        if kind == "block":
            return 1, layout[label].ordinal, label
        # embeddings before the blocks, everything else outside blocks after them
        return (0 if label == layers.EMBEDDING else 2), type_order.get(label, 99), label

    out = []
    for key in sorted(keys, key=order):
        label, kind = key
        changes = [step.get(key) for step in per_step]
        row: dict[str, Any] = {
            "label": label,
            "kind": kind,
            "changes": changes,
            "trend": _trend(changes),
        }
        if kind == "block":
            row["depth"] = layout[label].depth
        out.append(row)
    return out


def _trend(changes: Sequence[float | None]) -> str:
    vals = [c for c in changes if c is not None]
    if not vals:
        return "n/a"
    if all(c == 0.0 for c in vals):
        return "frozen"
    first, last = vals[0], vals[-1]
    if len(vals) < 2:
        return "steady"
    if first == 0.0 or last >= TREND_RATIO * first:
        return "rising" if last > first else "steady"
    if last <= first / TREND_RATIO:
        return "falling"
    return "steady"


def _type_series(per_type: list[dict[str, float | None]]) -> dict[str, list[float | None]]:
    types = {t for step in per_type for t in step}
    order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}
    return {
        t: [step.get(t) for step in per_type]
        for t in sorted(types, key=lambda t: (order.get(t, 99), t))
    }


def render_timeline_json(result: dict[str, Any]) -> str:
    return guard_json(json.dumps(result, indent=2, allow_nan=False) + "\n")


def _cell(x: float | None) -> str:
    if x is None:
        return "-"
    return "0 (frozen)" if x == 0.0 else f"{x:.3e}"


def render_timeline_text(result: dict[str, Any]) -> str:
    """A plain-text table: one line per step, then one row per block / layer group."""
    steps = result["steps"]
    lines = [f"Timeline: {len(result['checkpoints'])} checkpoints, {len(steps)} steps", ""]
    for s in steps:
        codes = ", ".join(f"{i['code']}" for i in s["insights"]) or "none"
        lines.append(f"step {s['step']}: {printable(s['from'])} -> {printable(s['to'])}")
        lines.append(
            f"  pattern {s['change_pattern']}, changed {s['changed']}, unchanged "
            f"{s['unchanged']}, added {s['added']}, removed {s['removed']}; "
            f"insights: {codes}"
        )
    lines += ["", "Relative change per block (sqrt(sum ||new-old||^2 / sum ||old||^2))"]
    header = ["block / group"] + [f"step {s['step']}" for s in steps] + ["trend"]
    table = [header] + [
        [printable(r["label"]) + ("" if r["kind"] == "block" else " (outside blocks)")]
        + [_cell(c) for c in r["changes"]]
        + [r["trend"]]
        for r in result["rows"]
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return guard_lines("\n".join(lines) + "\n")
