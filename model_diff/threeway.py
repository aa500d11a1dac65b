"""Three-way analysis of checkpoints: which side changed each tensor, and how the updates meet.

``classify(base, ours, theirs)`` is the one rule that says, per tensor name, who changed what:
a tensor's identity is its xxh3-128 key (dtype, shape and bytes; ``hashing.tensor_xxh3``), and

    ours == theirs                    -> "unchanged" (also == base) or "both" (the same change)
    ours == base, theirs differs      -> "theirs"   (modified, added or removed by theirs)
    theirs == base, ours differs      -> "ours"
    all three differ                  -> "conflict", with a reason: "add-add" (added on both
                                         sides, differently), "delete-modify" (removed on one
                                         side, changed on the other), "shape", "dtype", or
                                         "content" (same dtype and shape everywhere, values differ)

``merge.merge_checkpoints`` and ``compare3`` both classify through it. ``update_stats``
streams one tensor's three versions in chunks (float64 accumulators) for the numbers the
three-way report shows where both sides changed a tensor: the cosine between Δours = ours -
base and Δtheirs = theirs - base, the share of elements whose updates disagree in sign, and
the norms of both updates. ``compare3`` puts it together: per tensor, per layer type, per
block, and the merge-readiness summary.

This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .chunked import take
from .hashing import tensor_xxh3
from .layers import LAYER_TYPES, LayerClassifier, block_layout, block_position
from .metrics import default_workers
from .naming import natural_sorted
from .numbers import finite_or_none

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, TensorRef

#: Elements per chunk of the streaming passes (float64 temporaries of 2 MiB each).
CHUNK_ELEMENTS = 1 << 18
#: The pages of every this many elements are handed back once read (``release_range``).
RELEASE_ELEMENTS = 1 << 22

KINDS = ("unchanged", "ours", "theirs", "both", "conflict")
CONFLICTS = ("content", "shape", "dtype", "delete-modify", "add-add")
#: Pooled cosine between the two updates at or above which conflicting updates are "aligned",
#: at or below whose negative they are "opposing"; in between "independent".
ALIGNED_COSINE = 0.2


@dataclass(frozen=True)
class Version:
    """One side's version of a tensor: its layout and its content key."""

    dtype: str
    shape: tuple[int, ...]
    key: str  # xxh3-128 of dtype, shape and bytes

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "xxh3": self.key}


def _change(base: Version | None, side: Version | None) -> str | None:
    """What one side did to a tensor relative to base: None, added, removed or modified."""
    if side == base:
        return None
    if base is None:
        return "added"
    if side is None:
        return "removed"
    return "modified"


@dataclass(frozen=True)
class TensorChange:
    """Who changed one tensor, from the three versions' keys."""

    name: str
    base: Version | None
    ours: Version | None
    theirs: Version | None
    kind: str  # one of KINDS
    conflict: str | None = None  # one of CONFLICTS when kind == "conflict"

    @property
    def ours_change(self) -> str | None:
        return _change(self.base, self.ours)

    @property
    def theirs_change(self) -> str | None:
        return _change(self.base, self.theirs)

    @property
    def is_content_pair(self) -> bool:
        """All three versions present with one dtype and shape (updates can be compared)."""
        b, o, t = self.base, self.ours, self.theirs
        return (
            b is not None
            and o is not None
            and t is not None
            and b.dtype == o.dtype == t.dtype
            and b.shape == o.shape == t.shape
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "conflict": self.conflict,
            "ours": self.ours_change,
            "theirs": self.theirs_change,
            "versions": {
                side: (v.to_dict() if v is not None else None)
                for side, v in (("base", self.base), ("ours", self.ours), ("theirs", self.theirs))
            },
        }


def decide(name: str, b: Version | None, o: Version | None, t: Version | None) -> TensorChange:
    """The three-way rule for one tensor (see the module docstring)."""
    if o == t:
        return TensorChange(name, b, o, t, "unchanged" if o == b else "both")
    if o == b:
        return TensorChange(name, b, o, t, "theirs")
    if t == b:
        return TensorChange(name, b, o, t, "ours")
    if b is None:
        reason = "add-add"
    elif o is None or t is None:
        reason = "delete-modify"
    elif not b.shape == o.shape == t.shape:
        reason = "shape"
    elif not b.dtype == o.dtype == t.dtype:
        reason = "dtype"
    else:
        reason = "content"
    return TensorChange(name, b, o, t, "conflict", reason)


def _version(ref: TensorRef) -> Version:
    return Version(ref.dtype.name, ref.shape, tensor_xxh3(ref))


def classify(
    base: Checkpoint, ours: Checkpoint, theirs: Checkpoint, *, workers: int | None = None
) -> list[TensorChange]:
    """Every tensor name of the three checkpoints with who changed it, in natural name order.

    Reads each tensor once (xxh3, ~10 GB/s) and releases its pages after; ``workers``
    threads hash in parallel (xxhash releases the GIL).
    """
    names = natural_sorted(set(base.tensors) | set(ours.tensors) | set(theirs.tensors))
    refs = [
        ref
        for name in names
        for ckpt in (base, ours, theirs)
        if (ref := ckpt.tensors.get(name)) is not None
    ]
    n = workers or default_workers()
    if n > 1 and len(refs) > 1:
        with ThreadPoolExecutor(n, thread_name_prefix="model-diff-hash") as pool:
            versions = dict(zip(map(id, refs), pool.map(_version, refs), strict=True))
    else:
        versions = {id(r): _version(r) for r in refs}

    def version(ckpt: Checkpoint, name: str) -> Version | None:
        ref = ckpt.tensors.get(name)
        return versions[id(ref)] if ref is not None else None

    return [
        decide(name, version(base, name), version(ours, name), version(theirs, name))
        for name in names
    ]


# -- streaming over three versions of one tensor ---------------------------------------------


def chunk_ranges(numel: int, size: int = CHUNK_ELEMENTS) -> Iterator[tuple[int, int]]:
    for start in range(0, numel, size):
        yield start, min(numel, start + size)


def stream_float64(
    refs: Sequence[TensorRef], size: int = CHUNK_ELEMENTS
) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """``(start, stop, [float64 chunk per ref])`` over tensors of one element count, in
    bounded chunks; each ref's pages are released every ``RELEASE_ELEMENTS`` and at the end."""
    arrays = [r.array() for r in refs]
    numel = refs[0].numel
    released = 0
    try:
        for start, stop in chunk_ranges(numel, size):
            yield start, stop, [take(a, start, stop).astype(np.float64) for a in arrays]
            if stop - released >= RELEASE_ELEMENTS:
                for r in refs:
                    r.release_range(released, stop)
                released = stop
    finally:
        del arrays
        for r in refs:
            r.release()


class _UpdateRatios:
    """``cosine`` and ``sign_disagreement`` of the update sums a class holds (one tensor's,
    or a group's pooled)."""

    both_changed: int
    sign_disagree: int
    dot: float
    ours_sq: float
    theirs_sq: float

    @property
    def cosine(self) -> float | None:
        return pooled_cosine(self.dot, self.ours_sq, self.theirs_sq)

    @property
    def sign_disagreement(self) -> float | None:
        return self.sign_disagree / self.both_changed if self.both_changed else None


@dataclass(frozen=True)
class UpdateStats(_UpdateRatios):
    """How two updates of one tensor (Δours, Δtheirs from the same base) relate.

    Sums cover positions where all three versions are finite (``nonfinite`` counts the rest).
    ``cosine`` = <Δo, Δt> / (‖Δo‖·‖Δt‖) (None when either update is zero);
    ``sign_disagreement`` = share of the elements changed on both sides whose changes have
    opposite signs (None when no element changed on both); ``norm_ratio`` = ‖Δo‖ / ‖Δt‖.
    """

    numel: int
    nonfinite: int
    ours_changed: int  # elements with Δours != 0
    theirs_changed: int
    both_changed: int
    sign_disagree: int
    dot: float  # <Δo, Δt>
    ours_sq: float  # ‖Δo‖²
    theirs_sq: float
    base_sq: float  # ‖base‖²

    @property
    def ours_norm(self) -> float:
        return math.sqrt(self.ours_sq)

    @property
    def theirs_norm(self) -> float:
        return math.sqrt(self.theirs_sq)

    @property
    def norm_ratio(self) -> float | None:
        return self.ours_norm / self.theirs_norm if self.theirs_sq > 0 else None

    @property
    def ours_relative(self) -> float | None:
        """‖Δo‖ / ‖base‖."""
        return self.ours_norm / math.sqrt(self.base_sq) if self.base_sq > 0 else None

    @property
    def theirs_relative(self) -> float | None:
        return self.theirs_norm / math.sqrt(self.base_sq) if self.base_sq > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "numel": self.numel,
            "nonfinite": self.nonfinite,
            "ours_changed": self.ours_changed,
            "theirs_changed": self.theirs_changed,
            "both_changed": self.both_changed,
            "sign_disagree": self.sign_disagree,
            "cosine": finite_or_none(self.cosine),
            "sign_disagreement": finite_or_none(self.sign_disagreement),
            "ours_norm": finite_or_none(self.ours_norm),
            "theirs_norm": finite_or_none(self.theirs_norm),
            "norm_ratio": finite_or_none(self.norm_ratio),
            "ours_relative": finite_or_none(self.ours_relative),
            "theirs_relative": finite_or_none(self.theirs_relative),
        }


def pooled_cosine(dot: float, a_sq: float, b_sq: float) -> float | None:
    if a_sq <= 0 or b_sq <= 0:
        return None
    return max(-1.0, min(1.0, dot / (math.sqrt(a_sq) * math.sqrt(b_sq))))


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    # einsum's own loop, not BLAS (see metrics._dot: BLAS threads per call were 10x slower here)
    return float(np.einsum("i,i->", x, y))


def update_stats(base: TensorRef, ours: TensorRef, theirs: TensorRef) -> UpdateStats:
    """Stream the three versions of one tensor (same element count) once, in chunks."""
    nonfinite = oc = tc = both = disagree = 0
    dot = osq = tsq = bsq = 0.0
    with np.errstate(all="ignore"):
        for _, _, (b, o, t) in stream_float64((base, ours, theirs)):
            do = o - b
            dt = t - b
            sums = (_dot(do, dt), _dot(do, do), _dot(dt, dt), _dot(b, b))
            if not all(math.isfinite(s) for s in sums):
                ok = np.isfinite(b) & np.isfinite(o) & np.isfinite(t)
                nonfinite += int(ok.size - np.count_nonzero(ok))
                do, dt, fb = do[ok], dt[ok], b[ok]
                sums = (_dot(do, dt), _dot(do, do), _dot(dt, dt), _dot(fb, fb))
            dot += sums[0]
            osq += sums[1]
            tsq += sums[2]
            bsq += sums[3]
            o_nz = do != 0
            t_nz = dt != 0
            both_nz = o_nz & t_nz
            oc += int(np.count_nonzero(o_nz))
            tc += int(np.count_nonzero(t_nz))
            both += int(np.count_nonzero(both_nz))
            # signbit, not do*dt < 0: the product of two tiny float64 updates can underflow to 0
            disagree += int(np.count_nonzero(both_nz & (np.signbit(do) != np.signbit(dt))))
    return UpdateStats(base.numel, nonfinite, oc, tc, both, disagree, dot, osq, tsq, bsq)


# -- the three-way report's content -------------------------------------------------------


@dataclass
class GroupStats(_UpdateRatios):
    """Counts of one group of tensors (a layer type, a block) and the update numbers pooled
    over its content conflicts (identical changes on both sides would only dilute them)."""

    label: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    compared: int = 0  # content conflicts with update statistics
    both_changed: int = 0
    sign_disagree: int = 0
    dot: float = 0.0
    ours_sq: float = 0.0
    theirs_sq: float = 0.0

    def add(self, change: TensorChange, stats: UpdateStats | None) -> None:
        self.counts[change.kind] += 1
        if stats is not None and change.kind == "conflict":
            self.compared += 1
            self.both_changed += stats.both_changed
            self.sign_disagree += stats.sign_disagree
            self.dot += stats.dot
            self.ours_sq += stats.ours_sq
            self.theirs_sq += stats.theirs_sq

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "tensors": self.total,
            "counts": dict(self.counts),
            "compared": self.compared,
            "cosine": finite_or_none(self.cosine),
            "sign_disagreement": finite_or_none(self.sign_disagreement),
            "ours_norm": finite_or_none(math.sqrt(self.ours_sq)),
            "theirs_norm": finite_or_none(math.sqrt(self.theirs_sq)),
        }


def interference_label(cosine: float | None) -> str:
    """ "aligned", "independent" or "opposing" for a pooled cosine; "none" without conflicts."""
    if cosine is None:
        return "none"
    if cosine >= ALIGNED_COSINE:
        return "aligned"
    if cosine <= -ALIGNED_COSINE:
        return "opposing"
    return "independent"


@dataclass(frozen=True)
class Readiness:
    """Merge readiness: how many tensors merge exactly, how many conflict, how the
    conflicting updates interfere (pooled over content conflicts)."""

    total: int
    exact: int  # unchanged + ours + theirs + both
    conflicts: int
    content_conflicts: int  # one dtype and shape in all three, values differ
    arithmetic: int  # content conflicts average / task-arithmetic / ties can merge (float, finite)
    structural_conflicts: int  # shape, dtype, delete-modify, add-add: only ours/theirs
    cosine: float | None
    sign_disagreement: float | None
    opposing: int  # content conflicts whose own cosine is negative
    interference: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "exact": self.exact,
            "conflicts": self.conflicts,
            "content_conflicts": self.content_conflicts,
            "arithmetic": self.arithmetic,
            "structural_conflicts": self.structural_conflicts,
            "cosine": finite_or_none(self.cosine),
            "sign_disagreement": finite_or_none(self.sign_disagreement),
            "opposing": self.opposing,
            "interference": self.interference,
        }


@dataclass(frozen=True)
class ThreeWayTensor:
    change: TensorChange
    layer_type: str
    block: str | None
    stats: UpdateStats | None  # for tensors changed on both sides with comparable versions

    def to_dict(self) -> dict[str, Any]:
        d = self.change.to_dict()
        d["layer_type"] = self.layer_type
        d["block"] = self.block
        d["update"] = self.stats.to_dict() if self.stats is not None else None
        return d


@dataclass(frozen=True)
class ThreeWay:
    """Everything the three-way report shows (no arrays: numbers and names only)."""

    inputs: dict[str, dict[str, Any]]  # base / ours / theirs: Checkpoint.describe()
    tensors: tuple[ThreeWayTensor, ...]
    layer_types: tuple[GroupStats, ...]
    blocks: tuple[GroupStats, ...]
    readiness: Readiness

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        for t in self.tensors:
            out[t.change.kind] += 1
        return out

    @property
    def conflict_counts(self) -> dict[str, int]:
        out = dict.fromkeys(CONFLICTS, 0)
        for t in self.tensors:
            if t.change.conflict is not None:
                out[t.change.conflict] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "counts": self.counts,
            "conflict_counts": self.conflict_counts,
            "readiness": self.readiness.to_dict(),
            "layer_types": [g.to_dict() for g in self.layer_types],
            "blocks": [g.to_dict() for g in self.blocks],
            "tensors": [t.to_dict() for t in self.tensors],
        }


#: Label of the block group holding tensors outside repeated blocks.
NO_BLOCK = "(outside blocks)"


def _wants_stats(change: TensorChange, refs: tuple[TensorRef | None, ...]) -> bool:
    return (
        change.kind in ("both", "conflict")
        and change.is_content_pair
        and all(r is not None and r.dtype.is_float for r in refs)
    )


def compare3(
    base: Checkpoint,
    ours: Checkpoint,
    theirs: Checkpoint,
    *,
    labels: tuple[str, str, str] | None = None,
    workers: int | None = None,
    layer_patterns: dict[str, str] | None = None,
) -> ThreeWay:
    """The three-way analysis of open checkpoints: classify, then stream the tensors changed on
    both sides (floating dtypes, one layout in all three) for their update statistics."""
    changes = classify(base, ours, theirs, workers=workers)
    todo: list[tuple[int, tuple[TensorRef, TensorRef, TensorRef]]] = []
    for i, ch in enumerate(changes):
        refs = (
            base.tensors.get(ch.name),
            ours.tensors.get(ch.name),
            theirs.tensors.get(ch.name),
        )
        if _wants_stats(ch, refs):
            todo.append((i, refs))  # type: ignore[arg-type]  # _wants_stats checked None
    stats: dict[int, UpdateStats] = {}
    n = workers or default_workers()

    def run(item: tuple[int, tuple[TensorRef, TensorRef, TensorRef]]) -> UpdateStats:
        return update_stats(*item[1])

    results: Iterable[UpdateStats]
    if n > 1 and len(todo) > 1:
        pool = ThreadPoolExecutor(n, thread_name_prefix="model-diff-3way")
        results = pool.map(run, todo)
    else:
        pool = None
        results = map(run, todo)
    try:
        for (i, _), s in zip(todo, results, strict=True):
            stats[i] = s
    finally:
        if pool is not None:
            pool.shutdown()
    classifier = LayerClassifier(layer_patterns)
    rows: list[ThreeWayTensor] = []
    for i, ch in enumerate(changes):
        pos = block_position(ch.name)
        rows.append(
            ThreeWayTensor(
                ch, classifier.layer_type(ch.name), pos.label if pos else None, stats.get(i)
            )
        )
    names = ("base", "ours", "theirs")
    shown = labels or (base.path, ours.path, theirs.path)
    inputs = {
        side: ckpt.describe(label)
        for side, ckpt, label in zip(names, (base, ours, theirs), shown, strict=True)
    }
    return ThreeWay(inputs, tuple(rows), *_groups(rows), _readiness(rows))


def compare3_files(
    base: str | os.PathLike[str],
    ours: str | os.PathLike[str],
    theirs: str | os.PathLike[str],
    *,
    workers: int | None = None,
) -> ThreeWay:
    """``compare3`` of three checkpoint paths (files, HF folders, LFS pointers), labelled by
    the paths as given; the files are closed afterwards."""
    import contextlib

    from .formats import open_checkpoint

    paths = tuple(os.fspath(p) for p in (base, ours, theirs))
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(open_checkpoint(p)) for p in paths]
        return compare3(*opened, labels=paths, workers=workers)  # type: ignore[arg-type]


def _groups(
    rows: Sequence[ThreeWayTensor],
) -> tuple[tuple[GroupStats, ...], tuple[GroupStats, ...]]:
    by_type: dict[str, GroupStats] = {}
    by_block: dict[str, GroupStats] = {}
    for r in rows:
        by_type.setdefault(r.layer_type, GroupStats(r.layer_type)).add(r.change, r.stats)
        label = r.block if r.block is not None else NO_BLOCK
        by_block.setdefault(label, GroupStats(label)).add(r.change, r.stats)
    type_order = [t for t in LAYER_TYPES if t in by_type] + sorted(
        t for t in by_type if t not in LAYER_TYPES
    )
    layout = block_layout(r.change.name for r in rows)
    block_order = sorted(
        (b for b in by_block if b != NO_BLOCK), key=lambda b: layout[b].ordinal
    ) + ([NO_BLOCK] if NO_BLOCK in by_block else [])
    return tuple(by_type[t] for t in type_order), tuple(by_block[b] for b in block_order)


def _readiness(rows: Sequence[ThreeWayTensor]) -> Readiness:
    pooled = GroupStats("content conflicts")
    content = structural = opposing = arithmetic = 0
    for r in rows:
        if r.change.kind != "conflict":
            continue
        if r.change.conflict == "content":
            content += 1
            if r.stats is not None:
                pooled.add(r.change, r.stats)
                arithmetic += r.stats.nonfinite == 0
                cos = r.stats.cosine
                if cos is not None and cos < 0:
                    opposing += 1
        else:
            structural += 1
    conflicts = content + structural
    cos = pooled.cosine
    return Readiness(
        total=len(rows),
        exact=len(rows) - conflicts,
        conflicts=conflicts,
        content_conflicts=content,
        arithmetic=arithmetic,
        structural_conflicts=structural,
        cosine=cos,
        sign_disagreement=pooled.sign_disagreement,
        opposing=opposing,
        interference=interference_label(cos) if pooled.compared else "none",
    )
