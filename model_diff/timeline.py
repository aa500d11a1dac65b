"""How training moved each block across a run of checkpoints (``model-diff timeline``).

``run_timeline(sources)`` walks a run in order: each step diffs one checkpoint with the one
before it (unchanged tensors included, no low-rank pass), analyses the pair, keeps only the
small results (pattern, insight codes, biggest movers, per-group change sums from
``analysis.group_changes``) and closes the older checkpoint. A run of N checkpoints costs
N - 1 pair passes; each checkpoint is opened once and at most two are open at a time.

A checkpoint that cannot be had (a Git LFS object not fetched, when ``skip_unfetched``; a
file deleted in a commit) is a gap: its step says why, and the next step compares the
checkpoints on either side of it. ``Timeline`` holds per step the numbers, per block, per
layer group outside blocks and per layer type the relative change sqrt(sum ||delta||^2 /
sum ||old||^2) at each step with frozen and NaN/Inf cells marked, a trend word for each
row, and the events a reader should not miss, in words. ``compare_training_stages`` is the
original API: the same, as a dict.

This module must not print, exit, or import click, torch or the git package.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import layers
from .analysis import AnalysisConfig, DiffAnalyzer, GroupChange, group_changes
from .checkpoint import Checkpoint
from .diff import DiffConfig, DiffSummary, ModelDiff, ParameterDiff
from .errors import LFSObjectMissingError, ModelDiffError
from .numbers import finite_or_none, fmt_fold

__all__ = [
    "Event",
    "Mover",
    "Series",
    "Source",
    "Step",
    "StepInsight",
    "Timeline",
    "compare_training_stages",
    "run_timeline",
    "trend",
]

#: A row's trend: last vs first step beyond this ratio is "rising" / "falling".
TREND_RATIO = 1.5
#: A step at least this multiple of the row's previous step is a jump (an event); a peak at
#: least this multiple of the row's other steps' median, that falls back, is a "spike".
JUMP_RATIO = 10.0
#: After a spike the row falls to at most peak / this.
SPIKE_FALL = 3.0
#: "settled": the last third of the steps (at least two) lie within this ratio of each other.
SETTLED_SPREAD = 1.25
#: Biggest movers listed per step.
MOVERS = 3

Spec = str | os.PathLike[str] | Checkpoint
Opener = Callable[[Spec], Checkpoint]


@dataclass(frozen=True)
class Source:
    """One checkpoint of a run: its label, how to open it, and (optionally) a line about it
    (a commit's subject) or why it is absent (``missing``: a gap without trying to open)."""

    label: str
    open: Callable[[], Checkpoint]
    detail: str = ""
    missing: str | None = None
    #: close what ``open`` returns when done (False: the caller owns the Checkpoint)
    owned: bool = True


@dataclass(frozen=True)
class StepInsight:
    code: str
    severity: str
    title: str


@dataclass(frozen=True)
class Mover:
    """One of a step's most-changed tensors (by relative change)."""

    name: str
    change: float


@dataclass(frozen=True)
class Step:
    """One step: ``source`` (the previous checkpoint that could be read) -> ``target``.

    ``gap`` says why there is no comparison (then the numbers are None and the lists empty);
    ``spans`` is 2 or more when gaps lie between the two checkpoints compared.
    """

    step: int
    source: str | None
    target: str
    gap: str | None = None
    spans: int = 1
    change_pattern: str | None = None
    aggregate_change: float | None = None
    changed: int | None = None
    unchanged: int | None = None
    added: int | None = None
    removed: int | None = None
    avg_relative_change: float | None = None
    insights: tuple[StepInsight, ...] = ()
    movers: tuple[Mover, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "from": self.source,
            "to": self.target,
            "gap": self.gap,
            "spans": self.spans,
            "change_pattern": self.change_pattern,
            "aggregate_change": self.aggregate_change,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "added": self.added,
            "removed": self.removed,
            "avg_relative_change": self.avg_relative_change,
            "insights": [dataclasses.asdict(i) for i in self.insights],
            "movers": [dataclasses.asdict(m) for m in self.movers],
        }


@dataclass(frozen=True)
class Series:
    """One row across the steps: a block, a layer type outside blocks, or a layer type.

    ``changes[i]`` is the relative change at step i+1: 0.0 when every tensor is bit-identical
    (``frozen[i]``), None in a gap, where nothing was measurable, or where the new checkpoint
    has NaN/Inf in the row (``nonfinite[i]``: "NaN", "Inf" or "NaN/Inf").
    """

    label: str
    kind: str
    changes: tuple[float | None, ...]
    frozen: tuple[bool, ...]
    nonfinite: tuple[str | None, ...]
    trend: str
    depth: float | None = None
    #: (sum ||delta||^2, sum ||old||^2) per step, to pool rows exactly (not serialised)
    sums: tuple[tuple[float, float] | None, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "kind": self.kind,
            "changes": list(self.changes),
            "frozen": list(self.frozen),
            "nonfinite": list(self.nonfinite),
            "trend": self.trend,
        }
        if self.depth is not None:
            out["depth"] = self.depth
        return out


@dataclass(frozen=True)
class Event:
    """Something a reader of the run should not miss, in words (``text``).

    ``kind``: ``nonfinite`` (NaN/Inf from ``step``, until ``until`` when it went away),
    ``jump`` / ``drop`` (``ratio`` times the rows' previous step), ``frozen`` (bit-identical
    from ``step``, until ``until`` when they moved again), ``gap`` (no comparison).
    """

    kind: str
    step: int
    rows: tuple[str, ...]
    text: str
    ratio: float | None = None
    until: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step": self.step,
            "until": self.until,
            "rows": list(self.rows),
            "ratio": self.ratio,
            "text": self.text,
        }


@dataclass(frozen=True)
class Timeline:
    """A run's timeline: its checkpoints in order, the steps between them, one ``Series``
    per block / layer group (``rows``) and per layer type (``types``), and ``events``."""

    checkpoints: tuple[str, ...]
    details: tuple[str, ...]
    order: str
    steps: tuple[Step, ...]
    rows: tuple[Series, ...]
    types: tuple[Series, ...]
    events: tuple[Event, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoints": list(self.checkpoints),
            "details": list(self.details),
            "order": self.order,
            "steps": [s.to_dict() for s in self.steps],
            "rows": [r.to_dict() for r in self.rows],
            "layer_types": {t.label: list(t.changes) for t in self.types},
            "type_rows": [t.to_dict() for t in self.types],
            "events": [e.to_dict() for e in self.events],
        }


# -- the walk over the run ------------------------------------------------------------------


def _default_opener(spec: Spec) -> Checkpoint:
    if isinstance(spec, Checkpoint):
        return spec
    from .formats import open_checkpoint  # formats only when a path is given

    return open_checkpoint(spec)


def sources_from(
    checkpoints: Sequence[Spec], labels: Sequence[str] | None = None, opener: Opener | None = None
) -> list[Source]:
    """Paths or Checkpoints as ``Source``s (labels default to the paths as given)."""
    names = list(labels) if labels is not None else [_label(c) for c in checkpoints]
    if len(names) != len(checkpoints):
        raise ValueError("labels must name every checkpoint")
    open_ = opener or _default_opener
    return [
        Source(name, functools.partial(open_, spec), owned=not isinstance(spec, Checkpoint))
        for name, spec in zip(names, checkpoints, strict=True)
    ]


def _label(spec: Spec) -> str:
    return spec.path if isinstance(spec, Checkpoint) else os.fspath(spec)


def compare_training_stages(
    checkpoints: Sequence[Spec],
    *,
    labels: Sequence[str] | None = None,
    diff_config: DiffConfig | None = None,
    analysis_config: AnalysisConfig | None = None,
    opener: Opener | None = None,
) -> dict[str, Any]:
    """Diff and analyse each consecutive pair of ``checkpoints`` (paths or Checkpoints, in
    training order): ``run_timeline(...).to_dict()``.

    ``labels`` name the checkpoints in the output (default: the paths as given); ``opener``
    opens a path (default: ``formats.open_checkpoint``).
    """
    if len(checkpoints) < 2:
        raise _too_few(len(checkpoints))
    return run_timeline(
        sources_from(checkpoints, labels, opener),
        diff_config=diff_config,
        analysis_config=analysis_config,
    ).to_dict()


def _too_few(n: int) -> ModelDiffError:
    return ModelDiffError(
        f"timeline needs at least two checkpoints, got {n}",
        hint="pass them in training order (ckpt1 ckpt2 ckpt3 ...), a folder of checkpoints, "
        "or --git -- PATH for a file's history",
    )


def run_timeline(
    sources: Sequence[Source],
    *,
    order: str = "given",
    diff_config: DiffConfig | None = None,
    analysis_config: AnalysisConfig | None = None,
    skip_unfetched: bool = False,
) -> Timeline:
    """Walk ``sources`` in order, one pair at a time (see the module docstring).

    ``order`` says how the sources were put in order (shown in reports). ``diff_config`` is
    used with ``include_unchanged=True`` and ``low_rank=False`` forced (frozen blocks must be
    seen; the low-rank pass is per-pair detail the timeline does not show).
    ``skip_unfetched``: a Git LFS object that is not fetched is a gap, not an error.
    """
    if len(sources) < 2:
        raise _too_few(len(sources))
    config = dataclasses.replace(
        diff_config or DiffConfig(), include_unchanged=True, low_rank=False
    )
    analyzer = DiffAnalyzer(analysis_config)
    steps: list[Step] = []
    cells: list[dict[tuple[str, str], GroupChange]] = []
    names: set[str] = set()
    prev: Checkpoint | None = None  # the latest checkpoint that could be read, still open
    prev_src: Source | None = None
    prev_at = -1
    last_gap = ""  # why the latest checkpoint that could not be read could not
    try:
        for i, src in enumerate(sources):
            cur, why = _open(src, skip_unfetched)
            if i > 0 and (cur is None or prev is None or prev_src is None):
                # a gap: this checkpoint is missing, or nothing before it could be read
                source = prev_src.label if prev_src is not None else sources[i - 1].label
                steps.append(Step(i, source, src.label, gap=why if cur is None else last_gap))
                cells.append({})
            elif i > 0 and cur is not None and prev is not None and prev_src is not None:
                old, old_src, prev = prev, prev_src, cur  # cur is closed from here on
                try:
                    diffs, summary = ModelDiff(config).diff(old, cur)
                finally:
                    _close(old, old_src)  # at most two checkpoints open at a time
                analysis = analyzer.analyze(diffs, summary)
                groups = group_changes(diffs, analyzer.config)
                names.update(d.name for d in diffs)
                steps.append(
                    _step(
                        i, old_src.label, src.label, i - prev_at, summary, diffs, analysis, groups
                    )
                )
                cells.append({(g.kind, g.label): g for g in groups})
            if cur is not None:
                prev, prev_src, prev_at = cur, src, i
            else:
                last_gap = why or ""
    finally:
        if prev is not None and prev_src is not None:
            _close(prev, prev_src)
    rows, types = _series(cells, names)
    return Timeline(
        checkpoints=tuple(s.label for s in sources),
        details=tuple(s.detail for s in sources),
        order=order,
        steps=tuple(steps),
        rows=rows,
        types=types,
        events=tuple(_events(steps, rows, layers.block_layout(names))),
    )


def _open(src: Source, skip_unfetched: bool) -> tuple[Checkpoint | None, str | None]:
    if src.missing is not None:
        return None, src.missing
    try:
        return src.open(), None
    except LFSObjectMissingError as e:
        if not skip_unfetched:
            raise
        return None, f"{src.label}: Git LFS object {e.oid[:12]} ({e.size:,} bytes) not fetched"


def _close(ckpt: Checkpoint, src: Source) -> None:
    if src.owned:  # close only what we opened
        ckpt.close()


def _step(
    i: int,
    source: str,
    target: str,
    spans: int,
    summary: DiffSummary,
    diffs: Sequence[ParameterDiff],
    analysis: dict[str, Any],
    groups: Sequence[GroupChange],
) -> Step:
    whole = _pool([(g.d2, g.o2) for g in groups if g.kind == "layer_type"])
    moved = [
        d
        for d in diffs
        if d.is_changed and d.relative_change is not None and math.isfinite(d.relative_change)
    ]
    moved.sort(key=lambda d: -(d.relative_change or 0.0))  # stable: name order on ties
    return Step(
        step=i,
        source=source,
        target=target,
        spans=spans,
        change_pattern=analysis["change_pattern"],
        aggregate_change=whole,
        changed=summary.changed_parameters,
        unchanged=summary.unchanged_parameters,
        added=summary.added_parameters,
        removed=summary.removed_parameters,
        avg_relative_change=finite_or_none(summary.avg_relative_change),
        insights=tuple(
            StepInsight(x["code"], x["severity"], x["title"]) for x in analysis["insights"]
        ),
        movers=tuple(Mover(d.name, d.relative_change or 0.0) for d in moved[:MOVERS]),
    )


def _series(
    cells: list[dict[tuple[str, str], GroupChange]], names: set[str]
) -> tuple[tuple[Series, ...], tuple[Series, ...]]:
    layout = layers.block_layout(names)
    keys = {k for step in cells for k in step}
    type_order = {t: i for i, t in enumerate(layers.LAYER_TYPES)}

    def order(k: tuple[str, str]) -> tuple[int, int, str]:
        kind, label = k
        if kind == "block":
            return 1, layout[label].ordinal if label in layout else 0, label
        # embeddings before the blocks, everything else outside blocks after them
        return (0 if label == layers.EMBEDDING else 2), type_order.get(label, 99), label

    def series(key: tuple[str, str]) -> Series:
        kind, label = key
        gs = [step.get(key) for step in cells]
        bad = [_nonfinite_word(g) for g in gs]
        frozen = [g is not None and g.tensors > 0 and g.frozen == g.tensors for g in gs]
        changes = [
            None if g is None or w is not None else (0.0 if f else g.change)
            for g, w, f in zip(gs, bad, frozen, strict=True)
        ]
        depth = layout[label].depth if kind == "block" and label in layout else None
        return Series(
            label=label,
            kind=kind,
            changes=tuple(changes),
            frozen=tuple(frozen),
            nonfinite=tuple(bad),
            trend=trend(changes, bad),
            depth=depth,
            sums=tuple(None if g is None else (g.d2, g.o2) for g in gs),
        )

    rows = tuple(series(k) for k in sorted((k for k in keys if k[0] != "layer_type"), key=order))
    types = tuple(
        series(k)
        for k in sorted(
            (k for k in keys if k[0] == "layer_type"),
            key=lambda k: (type_order.get(k[1], 99), k[1]),
        )
    )
    return rows, types


def _nonfinite_word(g: GroupChange | None) -> str | None:
    if g is None or not (g.nan or g.inf):
        return None
    return "NaN/Inf" if g.nan and g.inf else "NaN" if g.nan else "Inf"


# -- trends and events ----------------------------------------------------------------------


def trend(changes: Sequence[float | None], nonfinite: Sequence[str | None] = ()) -> str:
    """The shape of a row in one word: ``diverged`` (NaN/Inf at some step), ``frozen`` (never
    moved), ``spike`` (a step between others, at least ``JUMP_RATIO`` x their median, the
    row falling back by ``SPIKE_FALL`` after it), ``rising`` / ``falling`` (last vs first step by
    ``TREND_RATIO``; ``settled`` when falling and the last third of the steps agree within
    ``SETTLED_SPREAD``), ``steady`` otherwise; ``n/a`` with nothing measured."""
    if any(w is not None for w in nonfinite):
        return "diverged"
    vals = [c for c in changes if c is not None]
    if not vals:
        return "n/a"
    if all(c == 0.0 for c in vals):
        return "frozen"
    if len(vals) < 2:
        return "steady"
    peak_at = max(range(len(vals)), key=lambda i: vals[i])
    peak = vals[peak_at]
    others = vals[:peak_at] + vals[peak_at + 1 :]
    after = vals[peak_at + 1 :]
    if (
        0 < peak_at < len(vals) - 1  # up, then down again
        and peak >= JUMP_RATIO * statistics.median(others)
        and max(after) <= peak / SPIKE_FALL
    ):
        return "spike"
    first, last = vals[0], vals[-1]
    if first == 0.0:
        return "rising" if last > 0.0 else "steady"
    if last >= TREND_RATIO * first:
        return "rising"
    if last <= first / TREND_RATIO:
        tail = vals[-max(2, len(vals) // 3) :]
        if len(vals) >= 3 and min(tail) > 0 and max(tail) <= SETTLED_SPREAD * min(tail):
            return "settled"
        return "falling"
    return "steady"


def _events(
    steps: Sequence[Step], rows: Sequence[Series], layout: dict[str, layers.BlockInfo]
) -> list[Event]:
    """Gaps, NaN/Inf, jumps and drops, and freezes, by step, in words: one event per step,
    kind (and end) naming every row it hit, neighbouring blocks as one run
    (``model.layers.3-5``)."""
    found: dict[tuple[int, str, int | None], list[tuple[Series, float | None]]] = {}
    for r in rows:
        for step, kind, until, ratio in _row_events(r, steps):
            found.setdefault((step, kind, until), []).append((r, ratio))
    events: list[Event] = [
        Event("gap", s.step, (), f"step {s.step}: no comparison ({s.gap})")
        for s in steps
        if s.gap is not None
    ]
    for (step, kind, until), hits in found.items():
        group = [r for r, _ in hits]
        ratio = hits[0][1] if len(hits) == 1 else None
        if kind in ("jump", "drop"):
            ratio = _pooled_ratio(group, steps, step) or ratio
        who = _name_rows(group, rows, layout)
        text = _words(kind, who, step, until, ratio, group, steps)
        events.append(Event(kind, step, tuple(r.label for r in group), text, ratio, until))
    position = {r.label: i for i, r in enumerate(rows)}
    events.sort(
        key=lambda e: (
            e.step,
            _KIND_ORDER[e.kind],
            e.until or 0,
            min((position[label] for label in e.rows), default=-1),
        )
    )
    return events


_KIND_ORDER = {"gap": 0, "nonfinite": 1, "jump": 2, "drop": 3, "frozen": 4}


def _row_events(
    r: Series, steps: Sequence[Step]
) -> list[tuple[int, str, int | None, float | None]]:
    """(step, kind, until, ratio) of one row's events."""
    out: list[tuple[int, str, int | None, float | None]] = []
    live = [k for k in range(len(r.changes)) if steps[k].gap is None]
    if not live:
        return out
    # NaN/Inf: from the first bad step, until the first clean measured step after it
    k = next((k for k in live if r.nonfinite[k] is not None), None)
    if k is not None:
        back = next((m for m in live if m > k and r.nonfinite[m] is None), None)
        out.append((k + 1, "nonfinite", None if back is None else back + 1, None))
    # frozen: each run of bit-identical steps (gaps do not break a run)
    for a, b in _runs([k for k in live if r.frozen[k]], live):
        nxt = next((m for m in live if m > b), None)
        out.append((a + 1, "frozen", None if nxt is None else nxt + 1, None))
    # jumps and drops against the row's previous measured step
    prev: float | None = None
    for k in live:
        v = r.changes[k]
        if v is not None and prev is not None and prev > 0 and v > 0:
            ratio = v / prev
            if ratio >= JUMP_RATIO:
                out.append((k + 1, "jump", None, ratio))
            elif ratio <= 1 / JUMP_RATIO:
                out.append((k + 1, "drop", None, ratio))
        prev = v
    return out


def _runs(ks: list[int], live: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of ``ks`` that are consecutive within ``live`` (gaps do not break one)."""
    pos = {k: i for i, k in enumerate(live)}
    out: list[tuple[int, int]] = []
    for k in ks:
        if out and pos[k] == pos[out[-1][1]] + 1:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


def _name_rows(
    group: Sequence[Series], rows: Sequence[Series], layout: dict[str, layers.BlockInfo]
) -> str:
    """``model.layers.0-2, model.layers.5, norm (outside blocks), head``; "every block and
    layer group" when the group is all of them."""
    if len(group) == len(rows) and len(rows) > 1:
        return "every block and layer group"
    parts: list[str] = []
    blocks = [r for r in group if r.kind == "block" and r.label in layout]
    i = 0
    while i < len(blocks):
        j = i
        while j + 1 < len(blocks):
            a, b = layout[blocks[j].label], layout[blocks[j + 1].label]
            if b.stack != a.stack or b.ordinal != a.ordinal + 1:
                break
            j += 1
        first, last = blocks[i].label, blocks[j].label
        tail = re.search(r"[\d.]+$", last[len(layout[first].stack) :])
        parts.append(first if i == j else f"{first}-{tail.group(0).lstrip('.') if tail else last}")
        i = j + 1
    if len(parts) > 6:
        parts = [*parts[:5], f"{len(parts) - 5} more block runs"]
    outside = [
        r.label if r.label in (layers.EMBEDDING, layers.HEAD) else f"{r.label} (outside blocks)"
        for r in group
        if r not in blocks
    ]
    return ", ".join(parts + outside)


def _pooled_ratio(group: Sequence[Series], steps: Sequence[Step], step: int) -> float | None:
    """The rows' pooled change at ``step`` over their pooled change at the step before it
    that was measured (sums pool exactly; None when either is unmeasurable)."""
    k = step - 1
    before = [m for m in range(k) if steps[m].gap is None]
    if not before:
        return None
    p = before[-1]
    now = [r.sums[k] for r in group if r.sums[k] is not None and r.sums[p] is not None]
    then = [r.sums[p] for r in group if r.sums[k] is not None and r.sums[p] is not None]
    if not now:
        return None
    a = _pool(now)  # type: ignore[arg-type]
    b = _pool(then)  # type: ignore[arg-type]
    return a / b if a is not None and b else None


def _pool(sums: Sequence[tuple[float, float]]) -> float | None:
    d2 = math.fsum(s[0] for s in sums)
    o2 = math.fsum(s[1] for s in sums)
    return math.sqrt(d2 / o2) if o2 > 0 else None


def _between(steps: Sequence[Step], step: int) -> str:
    s = steps[step - 1]
    return f"{s.source} -> {s.target}"


def _words(
    kind: str,
    who: str,
    step: int,
    until: int | None,
    ratio: float | None,
    group: Sequence[Series],
    steps: Sequence[Step],
) -> str:
    if kind == "nonfinite":
        words = sorted({w for r in group for w in r.nonfinite if w is not None})
        what = "NaN/Inf" if len(words) > 1 else words[0]
        tail = f" to step {until - 1}" if until is not None else ""
        span = f"from step {step}{tail}" if until is None or until - 1 > step else f"at step {step}"
        return f"{what} in {who} {span} ({_between(steps, step)})"
    if kind == "jump":
        return (
            f"{who} jumped at step {step}: {fmt_fold(ratio)} the previous step "
            f"({_between(steps, step)})"
        )
    if kind == "drop":
        inverse = 1 / ratio if ratio else None
        return (
            f"{who} dropped at step {step}: {fmt_fold(inverse)} below the previous step "
            f"({_between(steps, step)})"
        )
    # frozen
    if until is None:
        return f"{who} frozen since step {step}"
    if until - 1 == step:
        return f"{who} frozen at step {step}"
    return f"{who} frozen from step {step} to step {until - 1}"
