"""Three-way merge of checkpoints, tensor by tensor, exact by bytes.

``merge_checkpoints(base, ours, theirs, out, strategy=...)`` decides every tensor with the
three-way rule of ``threeway.classify`` (xxh3 keys of dtype, shape and bytes): a tensor changed
on one side only (modified, added or removed) comes from that side, the same change on both
sides is taken once, and only a tensor both sides changed differently is a conflict. Picked
tensors are copied byte for byte. Conflicts are resolved only by an explicit strategy:

- ``fail`` (default): nothing is written; the result lists the conflicts.
- ``ours`` / ``theirs``: that side's version of each conflicting tensor (a removal included).
- ``average``: (ours + theirs) / 2.
- ``task-arithmetic``: base + (ours - base) + (theirs - base).
- ``ties`` (TIES-merging, Yadav et al. 2023), per tensor with Δs = side - base:
  trim: keep Δs where |Δs| ≥ the m-th largest |Δs| of the tensor, m = ceil(k/100 · n)
  (ties at the threshold kept), zero elsewhere; elect: γ = sign(Δ̂ours + Δ̂theirs) per element
  (the sign with the larger summed magnitude); disjoint merge: Δ = mean of the Δ̂s whose sign
  is γ (0 where none is, also where the sum is exactly 0); result = base + Δ (λ = 1).

The three arithmetic strategies apply to content conflicts only (one dtype and shape in all
three versions, a floating dtype, every value finite); shape, dtype, delete/modify and
add/add conflicts, integer tensors and tensors holding NaN/Inf stay conflicts under them.
Arithmetic runs in float64 over bounded chunks and is rounded once to the tensor's dtype
(round to nearest, ties to even; bfloat16 and float8 through ml_dtypes, which rounds from
float64 directly). A conflict left unresolved means nothing is written.

The output has the format of OURS and is written only where that is faithful
(``writers.inspect_container``); it goes to a temporary beside ``out``, renamed on success.
Inputs are paths or checkpoints already open (a ``REV:path`` opened by the git layer).
This module knows nothing of git: a merge driver is a thin wrapper around it. It must not
import torch, click or the git/hook packages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelDiffError
from .naming import natural_key
from .threeway import TensorChange, classify, stream_float64

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, TensorRef
    from .writers import OutTensor

STRATEGIES = ("fail", "ours", "theirs", "average", "task-arithmetic", "ties")
ARITHMETIC = ("average", "task-arithmetic", "ties")
#: TIES' default share of each update kept, in percent (the paper's top-20%).
DEFAULT_TIES_K = 20.0

#: Outcomes of one tensor: where the merged version came from.
RESULTS = ("kept", "ours", "theirs", "both", "removed", "merged", "conflict")


@dataclass(frozen=True)
class TensorOutcome:
    """How one tensor was merged."""

    name: str
    kind: str  # threeway kind: unchanged, ours, theirs, both, conflict
    conflict: str | None  # threeway conflict reason
    result: str  # one of RESULTS ("conflict": left unresolved)
    resolved_by: str | None = None  # the strategy that resolved a conflict
    note: str | None = None  # why a conflict stays unresolved under the strategy

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "conflict": self.conflict,
            "result": self.result,
            "resolved_by": self.resolved_by,
            "note": self.note,
        }


@dataclass(frozen=True)
class MergeResult:
    """What a merge decided per tensor and whether (and where) it wrote the result."""

    base: str | None  # None: merged without a common ancestor
    ours: str
    theirs: str
    output: str
    format: str
    strategy: str
    written: bool
    tensors: tuple[TensorOutcome, ...]
    ties_k: float | None = None

    @property
    def conflicts(self) -> tuple[TensorOutcome, ...]:
        """Tensors left unresolved (nothing was written when there is any)."""
        return tuple(t for t in self.tensors if t.result == "conflict")

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(RESULTS, 0)
        for t in self.tensors:
            out[t.result] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "ours": self.ours,
            "theirs": self.theirs,
            "output": self.output,
            "format": self.format,
            "strategy": self.strategy,
            "ties_k": self.ties_k,
            "written": self.written,
            "counts": self.counts,
            "conflicts": [t.name for t in self.conflicts],
            "tensors": [t.to_dict() for t in self.tensors],
        }


def _check_options(strategy: str, ties_k: float) -> None:
    if strategy not in STRATEGIES:
        raise ModelDiffError(
            f"unknown merge strategy {strategy!r}", hint=f"use one of: {', '.join(STRATEGIES)}"
        )
    if not (isinstance(ties_k, (int, float)) and 0 < ties_k <= 100):
        raise ModelDiffError(
            f"TIES k must be a percentage in (0, 100], not {ties_k!r}", hint="the default is 20"
        )


def merge_checkpoints(
    base: str | os.PathLike[str] | Checkpoint | None,
    ours: str | os.PathLike[str] | Checkpoint,
    theirs: str | os.PathLike[str] | Checkpoint,
    out: str | os.PathLike[str],
    strategy: str = "fail",
    *,
    ties_k: float = DEFAULT_TIES_K,
    workers: int | None = None,
) -> MergeResult:
    """Merge THEIRS into OURS relative to BASE, tensor by tensor, and write the result to
    ``out`` in OURS' format (see the module docstring for the rules and strategies).

    Each input is a path (opened here and closed afterwards) or a checkpoint already open
    (``open_checkpoint``, a ``REV:path`` opened by the git layer; the caller closes it).
    ``base=None`` means no common ancestor (git's add/add case): every tensor counts as
    added on the side(s) holding it. Returns a ``MergeResult``; ``written`` is False (and
    nothing was written) when conflicts remain. Raises ``UnwritableCheckpointError`` when
    OURS (or BASE/THEIRS) holds more than tensors or the result does not fit OURS' format,
    ``CheckpointError`` for unreadable input, ``ModelDiffError`` for a bad strategy or output
    path; nothing is written then either.
    """
    from .checkpoint import Checkpoint, from_arrays
    from .formats import open_checkpoint
    from .writers import inspect_container, write_checkpoint

    _check_options(strategy, ties_k)
    dest = os.fspath(out)
    with contextlib.ExitStack() as stack:

        def opened(x: str | os.PathLike[str] | Checkpoint) -> tuple[Checkpoint, str]:
            if isinstance(x, Checkpoint):
                return x, x.path
            return stack.enter_context(open_checkpoint(x)), os.fspath(x)

        b, base_label = opened(base) if base is not None else (from_arrays({}), None)
        o, ours_label = opened(ours)
        t, theirs_label = opened(theirs)
        if base is not None:
            inspect_container(b)
        inspect_container(t)
        container = inspect_container(o)
        outcomes, tensors = resolve(classify(b, o, t, workers=workers), b, o, t, strategy, ties_k)
        result = MergeResult(
            base=base_label,
            ours=ours_label,
            theirs=theirs_label,
            output=dest,
            format=container.format,
            strategy=strategy,
            written=False,
            tensors=tuple(outcomes),
            ties_k=ties_k if strategy == "ties" else None,
        )
        if result.conflicts:
            return result
        write_checkpoint(container, tensors, dest)
    return dataclasses.replace(result, written=True)


def resolve(
    changes: Sequence[TensorChange],
    base: Checkpoint,
    ours: Checkpoint,
    theirs: Checkpoint,
    strategy: str,
    ties_k: float = DEFAULT_TIES_K,
) -> tuple[list[TensorOutcome], dict[str, OutTensor]]:
    """Each tensor's outcome under ``strategy`` and the tensors to write (natural order)."""
    from .writers import copy_of

    outcomes: list[TensorOutcome] = []
    tensors: dict[str, OutTensor] = {}

    def take(ch: TensorChange, side: str, result: str, by: str | None = None) -> None:
        ref = {"ours": ours, "theirs": theirs}[side].tensors.get(ch.name)
        if ref is None:
            result = "removed"
        else:
            tensors[ch.name] = copy_of(ref)
        outcomes.append(TensorOutcome(ch.name, ch.kind, ch.conflict, result, by))

    for ch in changes:
        if ch.kind == "unchanged":
            take(ch, "ours", "kept")
        elif ch.kind in ("ours", "theirs", "both"):
            take(ch, "theirs" if ch.kind == "theirs" else "ours", ch.kind)
        elif strategy in ("ours", "theirs"):
            take(ch, strategy, strategy, strategy)
        elif strategy in ARITHMETIC:
            refs = (base.tensors[ch.name], ours.tensors[ch.name], theirs.tensors[ch.name])
            why = _not_arithmetic(ch, refs)
            if why is not None:
                outcomes.append(TensorOutcome(ch.name, ch.kind, ch.conflict, "conflict", note=why))
                continue
            tensors[ch.name] = merged_tensor(strategy, *refs, ties_k=ties_k)
            outcomes.append(TensorOutcome(ch.name, ch.kind, ch.conflict, "merged", strategy))
        else:
            outcomes.append(TensorOutcome(ch.name, ch.kind, ch.conflict, "conflict"))
    return outcomes, dict(sorted(tensors.items(), key=lambda kv: natural_key(kv[0])))


def _not_arithmetic(ch: TensorChange, refs: tuple[TensorRef, ...]) -> str | None:
    """Why a conflict cannot be merged by arithmetic, or None."""
    if ch.conflict != "content":
        return f"{ch.conflict} conflicts are resolved only by --strategy ours or theirs"
    if not refs[0].dtype.is_float:
        return f"{refs[0].dtype.name} tensors are never merged by arithmetic"
    if not all_finite(refs):
        return "holds NaN/Inf; arithmetic would spread them"
    return None


def all_finite(refs: Sequence[TensorRef]) -> bool:
    """True when every element of every ref is finite (one chunked pass)."""
    with np.errstate(all="ignore"):
        for _, _, chunks in stream_float64(refs):
            for c in chunks:
                # a float64 sum of finite float32/16 values cannot overflow: check elements
                # only when the sum says so (float64 inputs may overflow a sum: same check)
                if not math.isfinite(float(np.sum(c))) and not np.isfinite(c).all():
                    return False
    return True


# -- the arithmetic -----------------------------------------------------------------------

Formula = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def average(b: np.ndarray, o: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (o + t) / 2


def task_arithmetic(b: np.ndarray, o: np.ndarray, t: np.ndarray) -> np.ndarray:
    return b + (o - b) + (t - b)


def ties(b: np.ndarray, o: np.ndarray, t: np.ndarray, thr_o: float, thr_t: float) -> np.ndarray:
    """TIES on one chunk, given each update's trim threshold (see the module docstring)."""
    do = o - b
    dt = t - b
    ko = np.where(np.abs(do) >= thr_o, do, 0.0)
    kt = np.where(np.abs(dt) >= thr_t, dt, 0.0)
    gamma = np.sign(ko + kt)
    agree_o = (ko != 0) & (np.sign(ko) == gamma)
    agree_t = (kt != 0) & (np.sign(kt) == gamma)
    count = agree_o.astype(np.float64) + agree_t
    total = np.where(agree_o, ko, 0.0) + np.where(agree_t, kt, 0.0)
    delta = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return b + delta


def ties_keep_count(numel: int, k: float) -> int:
    """m: how many of a tensor's ``numel`` update elements TIES keeps at k percent."""
    return max(1, math.ceil(round(k * numel / 100, 9))) if numel else 0


def _kth_largest_abs_deltas(refs: tuple[TensorRef, TensorRef, TensorRef], m: int) -> list[float]:
    """The m-th largest |Δours| and |Δtheirs| of a tensor, exactly, in bounded memory.

    Radix select on the float64 bit patterns (for non-negative floats the unsigned integer
    order is the value order): four passes, each a 65536-bin histogram of the next 16 bits
    among the elements that share the prefix found so far.
    """
    prefix = [0, 0]
    rank = [m, m]
    for shift in (48, 32, 16, 0):
        hists = [np.zeros(1 << 16, np.int64), np.zeros(1 << 16, np.int64)]
        for _, _, (b, o, t) in stream_float64(refs):
            for i, d in enumerate((o - b, t - b)):
                bits = np.abs(d).view(np.uint64)
                if shift < 48:
                    bits = bits[(bits >> np.uint64(shift + 16)) == np.uint64(prefix[i])]
                digits = ((bits >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.intp)
                hists[i] += np.bincount(digits, minlength=1 << 16)
        for i in range(2):
            desc = hists[i][::-1]
            cum = np.cumsum(desc)
            j = int(np.searchsorted(cum, rank[i]))  # first bin (from the top) reaching rank
            rank[i] -= int(cum[j] - desc[j])
            prefix[i] = (prefix[i] << 16) | ((1 << 16) - 1 - j)
    return [float(np.array(p, dtype=np.uint64).view(np.float64)) for p in prefix]


def merged_tensor(
    strategy: str,
    base: TensorRef,
    ours: TensorRef,
    theirs: TensorRef,
    *,
    ties_k: float = DEFAULT_TIES_K,
) -> OutTensor:
    """An ``OutTensor`` whose bytes are computed chunk by chunk when written."""
    from .writers import OutTensor

    refs = (base, ours, theirs)
    dtype = ours.dtype

    def chunks() -> Iterator[memoryview]:
        formula: Formula
        if strategy == "average":
            formula = average
        elif strategy == "task-arithmetic":
            formula = task_arithmetic
        elif strategy == "ties":
            m = ties_keep_count(base.numel, ties_k)
            thr_o, thr_t = _kth_largest_abs_deltas(refs, m) if m else (0.0, 0.0)

            def formula(b: np.ndarray, o: np.ndarray, t: np.ndarray) -> np.ndarray:
                return ties(b, o, t, thr_o, thr_t)

        else:
            raise ValueError(f"bug: {strategy!r} is not an arithmetic strategy")
        for _, _, (b, o, t) in stream_float64(refs):
            # a result beyond the dtype's range becomes inf (NaN in float8_e4m3fn), as documented
            with np.errstate(over="ignore"):
                out = formula(b, o, t).astype(dtype.numpy)
            yield out.view(np.uint8).data

    return OutTensor(ours.name, dtype, ours.shape, chunks)
