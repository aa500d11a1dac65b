"""Pairing two checkpoints tensor by tensor: ``ModelDiff``, its config and its results.

``ModelDiff.diff(old, new)`` aligns names, classifies each tensor (added, removed, shape- or
dtype-changed, modified, unchanged), runs the streaming metrics on a small thread pool and
returns ``ParameterDiff`` records in natural name order plus a ``DiffSummary``. Results hold
no arrays. This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

from . import alignment, layers, metrics
from .blas import single_threaded_blas
from .checkpoint import Checkpoint, NameMapping, TensorInfo, TensorRef, in_read_order
from .chunked import dense, head
from .dtypes import BY_NAME
from .layers import EMBEDDING, HEAD, builtin_layer_type
from .naming import natural_key, natural_sorted
from .numbers import finite_or_none


class ChangeType(str, Enum):
    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"
    UNCHANGED = "unchanged"
    SHAPE_CHANGED = "shape_changed"
    DTYPE_CHANGED = "dtype_changed"
    #: same bytes under a new name (``ParameterDiff.old_name`` is the old one)
    RENAMED = "renamed"
    #: on one side only, a duplicate of a tensor both sides keep (``tied_to``): a tied
    #: weight torch saved under both names and another writer saved once
    TIED = "tied"

    def __str__(self) -> str:
        return self.value


@dataclass
class DiffConfig:
    """Options of a diff. Every field changes the result; see the field table in docs/api.md."""

    #: Run the element-wise pass (all metrics and per-side statistics). False compares bytes
    #: only: tensors are still classified changed/unchanged exactly, but carry no metrics.
    compute_element_wise: bool = True
    #: An element counts as changed for ``change_ratio`` when |new - old| > this.
    change_threshold: float = 1e-6
    #: Keep unchanged tensors in the returned list (the summary counts them either way).
    include_unchanged: bool = False
    #: Weight the summary's averages by each tensor's element count (False: each tensor = 1).
    normalize_by_size: bool = True
    #: Number of most-changed tensors listed in ``DiffSummary.top_changed_layers``.
    top_k_layers: int = 10
    #: Worker threads for the tensor pass (None: min(4, cores)); a pair of checkpoints holding
    #: less than ``metrics.POOL_MIN_BYTES`` of tensor data, or tensors averaging less than
    #: ``metrics.POOL_MIN_ITEM_BYTES`` a pair, runs on the calling thread whatever this says.
    num_workers: int | None = None
    #: Pair tensors whose names differ (model_diff.alignment): strip a wrapper prefix
    #: (``module.``, ``_orig_mod.``) that only one side has, apply name rules found across
    #: many tensors (``model.`` prefix, spaces vs underscores), pair renames by identical
    #: bytes. False compares names exactly as stored. Tied duplicates are recognised either way.
    align_prefixes: bool = True
    #: Low-rank analysis of 2-D deltas: "auto" (only where affordable), True (always), False.
    low_rank: bool | str = "auto"

    def __post_init__(self) -> None:
        if not (isinstance(self.change_threshold, (int, float)) and self.change_threshold >= 0):
            raise ValueError("change_threshold must be a number >= 0")
        if not (isinstance(self.top_k_layers, int) and self.top_k_layers >= 0):
            raise ValueError("top_k_layers must be an integer >= 0")
        if self.low_rank not in (True, False, "auto"):
            raise ValueError("low_rank must be True, False or 'auto'")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ParameterDiff:
    """How one named tensor changed between two checkpoints.

    Metrics are None where undefined: for added/removed tensors, for pairs without any
    finite element, ``cosine_sim`` when exactly one side is all-zero, ``relative_change`` when
    the old tensor is all-zero. NaN/Inf are counted in ``old_stats``/``new_stats``.
    """

    name: str
    change_type: ChangeType
    old_shape: tuple[int, ...] | None
    new_shape: tuple[int, ...] | None
    old_dtype: str | None
    new_dtype: str | None
    num_elements: int
    l2_diff: float | None = None
    l1_diff: float | None = None
    max_diff: float | None = None
    mean_diff: float | None = None
    mean_signed_diff: float | None = None
    cosine_sim: float | None = None
    relative_change: float | None = None
    change_ratio: float | None = None
    sign_flip_ratio: float | None = None
    finite_pairs: int | None = None
    old_stats: metrics.SideStats | None = None
    new_stats: metrics.SideStats | None = None
    #: For a shape change along the first axis (vocabulary resize): rows compared / rows added.
    overlap_rows: int | None = None
    added_rows: int | None = None
    #: Low-rank structure of the delta (see model_diff.lowrank), when computed.
    low_rank: dict[str, Any] | None = None
    #: The old checkpoint's name where it differs (a name rule or a rename paired them).
    old_name: str | None = None
    #: For a tied duplicate: the tensor it duplicates, and how that was seen ("storage": the
    #: file stores both names as one tensor; "bytes": equal contents).
    tied_to: str | None = None
    tied_by: str | None = None

    @property
    def is_changed(self) -> bool:
        """The tensor's content changed, or it exists on one side only. False for unchanged
        tensors, renames (same bytes) and tied duplicates: those are listed, not changes."""
        return self.change_type not in _NOT_CHANGES

    @property
    def nonfinite_old(self) -> int:
        s = self.old_stats
        return (s.nan_count + s.inf_count) if s else 0

    @property
    def nonfinite_new(self) -> int:
        s = self.new_stats
        return (s.nan_count + s.inf_count) if s else 0

    @property
    def old_norm(self) -> float | None:
        return self.old_stats.norm if self.old_stats else None

    @property
    def new_norm(self) -> float | None:
        return self.new_stats.norm if self.new_stats else None

    # -- the original API's fields ------------------------------------------------------
    @property
    def old_info(self) -> TensorInfo | None:
        """The old tensor's ``TensorInfo`` (None when it was added)."""
        return _info(self.name, self.old_shape, self.old_dtype, self.old_stats)

    @property
    def new_info(self) -> TensorInfo | None:
        """The new tensor's ``TensorInfo`` (None when it was removed)."""
        return _info(self.name, self.new_shape, self.new_dtype, self.new_stats)

    @property
    def total_elements(self) -> int:
        """Elements of the tensor (the new side's; the old side's for a removed tensor)."""
        return self.num_elements

    @property
    def changed_elements(self) -> int | None:
        """Elements with |new - old| > ``change_threshold`` among the compared pairs; None
        where nothing was compared element-wise (added, removed, shape changed, no pass)."""
        if self.change_ratio is None or self.finite_pairs is None:
            return None
        return round(self.change_ratio * self.finite_pairs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict in field order: non-finite floats become None, enums their values,
        shapes lists; the pairing fields (``old_name``, ``tied_to``, ``tied_by``) only where set.
        Spelled out field by field: a report calls it once per tensor."""
        fin = finite_or_none
        out: dict[str, Any] = {
            "name": self.name,
            "change_type": self.change_type.value,
            "old_shape": None if self.old_shape is None else list(self.old_shape),
            "new_shape": None if self.new_shape is None else list(self.new_shape),
            "old_dtype": self.old_dtype,
            "new_dtype": self.new_dtype,
            "num_elements": self.num_elements,
            "l2_diff": fin(self.l2_diff),
            "l1_diff": fin(self.l1_diff),
            "max_diff": fin(self.max_diff),
            "mean_diff": fin(self.mean_diff),
            "mean_signed_diff": fin(self.mean_signed_diff),
            "cosine_sim": fin(self.cosine_sim),
            "relative_change": fin(self.relative_change),
            "change_ratio": fin(self.change_ratio),
            "sign_flip_ratio": fin(self.sign_flip_ratio),
            "finite_pairs": self.finite_pairs,
            "old_stats": None if self.old_stats is None else self.old_stats.to_dict(),
            "new_stats": None if self.new_stats is None else self.new_stats.to_dict(),
            "overlap_rows": self.overlap_rows,
            "added_rows": self.added_rows,
            "low_rank": self.low_rank,
        }
        for name in _PAIRING_FIELDS:
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out


@dataclass(frozen=True)
class DiffSummary:
    """Whole-checkpoint totals. "parameters" counts named tensors, as in the original API."""

    total_parameters: int
    modified_parameters: int
    unchanged_parameters: int
    added_parameters: int
    removed_parameters: int
    shape_changed_parameters: int
    dtype_changed_parameters: int
    old_num_elements: int
    new_num_elements: int
    changed_elements: int
    avg_l2_diff: float
    avg_relative_change: float
    max_relative_change: float
    avg_cosine_similarity: float
    min_cosine_similarity: float
    nonfinite_tensors: list[str] = field(default_factory=list)
    top_changed_layers: list[str] = field(default_factory=list)
    #: The base of the averages: how many tensors the relative-change and the cosine
    #: averages (and max/min) are over, and why each other tensor is left out (reason ->
    #: count: added, removed, shape_changed, buffers = not trained (``layers.is_buffer``),
    #: nonfinite = no finite element pair, zero_norm =
    #: an all-zero old tensor, not_measured = compared by bytes only). An average over no
    #: tensor is NaN here and null / "n/a" in every report, never 0 or 1.
    averaged_tensors: int = 0
    cosine_tensors: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    old_path: str | None = None
    new_path: str | None = None
    old_format: str | None = None
    new_format: str | None = None
    #: ``NameMapping.to_dict()`` when one side's names were mapped onto the other's (a GGUF
    #: or ONNX file against its source checkpoint); serialised only when present.
    name_mapping: dict[str, Any] | None = None
    #: The names of the bit-identical tensors, in natural order: a diff made with
    #: ``include_unchanged=False`` (the original API's default) leaves their records out,
    #: and the analyzer still names frozen tensors from this. Not serialised by
    #: ``to_dict()`` (the analysis lists the frozen ones).
    unchanged_tensors: list[str] = field(default_factory=list, compare=False)
    #: The original API's fields, kept for it (not serialised: reports carry the same facts
    #: per tensor): the sum of the compared tensors' l2_diff (None when nothing was compared),
    #: and layers (a tensor name less its last part, as the original grouped them) ranked by
    #: their largest relative change: the top_k_layers most changed (changed ones only) and
    #: the top_k_layers least changed (unchanged layers first).
    total_l2_diff: float | None = field(default=None, compare=False)
    most_changed_layers: list[str] = field(default_factory=list, compare=False)
    least_changed_layers: list[str] = field(default_factory=list, compare=False)
    #: Tensors paired as renames (same bytes, new name) and tied duplicates on one side
    #: (model_diff.alignment); serialised only when not 0.
    renamed_parameters: int = 0
    tied_parameters: int = 0

    @property
    def changed_parameters(self) -> int:
        """Tensors whose content changed or that exist on one side only."""
        return (
            self.total_parameters
            - self.unchanged_parameters
            - self.renamed_parameters
            - self.tied_parameters
        )

    @property
    def total_parameters_old(self) -> int:
        """Elements in the old checkpoint (the original API's name)."""
        return self.old_num_elements

    @property
    def total_parameters_new(self) -> int:
        """Elements in the new checkpoint (the original API's name)."""
        return self.new_num_elements

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _API_ONLY_FIELDS or (
                f.name in _OMITTED_WHEN_EMPTY and not getattr(self, f.name)
            ):
                continue
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            out[f.name] = v
        return out


#: DiffSummary fields left out of ``to_dict()``: the original API's extras, and the
#: unchanged tensors' names (the analysis lists the frozen ones).
_API_ONLY_FIELDS = frozenset(
    {"unchanged_tensors", "total_l2_diff", "most_changed_layers", "least_changed_layers"}
)
#: DiffSummary fields serialised only when set (reports without them keep their shape).
_OMITTED_WHEN_EMPTY = frozenset({"name_mapping", "renamed_parameters", "tied_parameters"})
#: ParameterDiff fields serialised only when set.
_PAIRING_FIELDS = ("old_name", "tied_to", "tied_by")
_NOT_CHANGES = frozenset({ChangeType.UNCHANGED, ChangeType.RENAMED, ChangeType.TIED})

ProgressCallback = Callable[[int, int, str], None]


def map_formats(
    old: Checkpoint, new: Checkpoint
) -> tuple[Checkpoint, Checkpoint, NameMapping | None]:
    """Map a converted checkpoint's names and layouts onto its source's (a GGUF or ONNX file
    against the HF/PyTorch checkpoint it came from): at most one side is mapped, by its
    reader (``Checkpoint.map_onto``)."""
    if old.format == new.format:
        return old, new, None
    got = old.map_onto(new)
    if got is not None:
        return got[0], new, dataclasses.replace(got[1], side="old")
    got = new.map_onto(old)
    if got is not None:
        return old, got[0], dataclasses.replace(got[1], side="new")
    return old, new, None


def align_names(old: Checkpoint, new: Checkpoint) -> tuple[Checkpoint, Checkpoint]:
    """Strip a wrapper prefix (DDP ``module.``, torch.compile ``_orig_mod.``) one side lacks
    (``alignment.strip_wrappers``; ``ModelDiff`` also applies name rules and renames)."""
    old, new, _ = alignment.strip_wrappers(old, new)
    return old, new


class ModelDiff:
    """Diffs two checkpoints with a ``DiffConfig``."""

    def __init__(self, config: DiffConfig | None = None) -> None:
        self.config = config or DiffConfig()

    # -- public -------------------------------------------------------------------------
    def diff(
        self,
        old: Checkpoint | str | os.PathLike[str],
        new: Checkpoint | str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> tuple[list[ParameterDiff], DiffSummary]:
        """Compare ``old`` with ``new`` (checkpoints or paths) -> (diffs, summary)."""
        opened: list[Checkpoint] = []
        try:
            old_ckpt = self._as_checkpoint(old, opened)
            new_ckpt = self._as_checkpoint(new, opened)
            return self._diff(old_ckpt, new_ckpt, progress)
        finally:
            for c in opened:
                c.close()

    @staticmethod
    def _as_checkpoint(
        source: Checkpoint | str | os.PathLike[str], opened: list[Checkpoint]
    ) -> Checkpoint:
        if isinstance(source, Checkpoint):
            return source
        from .formats import open_checkpoint

        ckpt = open_checkpoint(source)
        opened.append(ckpt)
        return ckpt

    # -- internals ------------------------------------------------------------------------
    def _diff(
        self, old: Checkpoint, new: Checkpoint, progress: ProgressCallback | None
    ) -> tuple[list[ParameterDiff], DiffSummary]:
        old, new, mapping = map_formats(old, new)
        pairing = alignment.Pairing(old, new)
        if self.config.align_prefixes:
            pairing = alignment.pair_checkpoints(old, new)
            old, new = pairing.old, pairing.new
            if pairing.rules:
                if mapping is None:  # rules only: how many old names they rewrote, of all
                    mapped = sum(r.count for r in pairing.rules if r.side == "old")
                    mapping = NameMapping("", mapped, len(old.tensors))
                mapping = dataclasses.replace(mapping, rules=pairing.rules)
        names = natural_sorted(set(old.tensors) | set(new.tensors))
        total = len(names)
        done = 0

        def work(name: str) -> ParameterDiff:
            return self.diff_tensor(old.tensors.get(name), new.tensors.get(name))

        workers = self.config.num_workers or metrics.default_workers()
        found: dict[int, ParameterDiff] = {}
        nbytes = old.size_bytes + new.size_bytes
        with single_threaded_blas(), metrics.ordered_map(nbytes, workers, total) as ordered_map:
            # In file order (the new side's where it has the tensor): safetensors files keep
            # tensors in name order (layers 1, 10, 100, 11, ...). Reports keep natural order.
            for i, d in in_read_order(
                ordered_map, work, names, lambda n: new.tensors.get(n) or old.tensors[n]
            ):
                found[i] = d
                done += 1
                if progress is not None:
                    progress(done, total, d.name)
            all_diffs = [found[i] for i in range(total)]
            if self.config.low_rank == "auto":
                all_diffs = self._auto_low_rank(all_diffs, old, new, ordered_map)
        if self.config.low_rank is not False:
            from . import lowrank

            lowrank.release_scratch()  # this thread's buffers (the pool's ended with it)
        all_diffs = _label_pairs(all_diffs, pairing, old, new)
        summary = summarize(all_diffs, self.config, old, new, name_mapping=mapping)
        kept = [
            d
            for d in all_diffs
            if self.config.include_unchanged or d.change_type is not ChangeType.UNCHANGED
        ]
        return kept, summary

    def diff_tensor(self, a: TensorRef | None, b: TensorRef | None) -> ParameterDiff:
        """One tensor pair (either side may be missing)."""
        if a is None and b is None:
            raise ValueError("diff_tensor needs at least one side")
        if a is None or b is None:
            ref = b if a is None else a
            assert ref is not None  # for mypy: one side exists (checked above)
            stats = self._side_stats(ref) if self.config.compute_element_wise else None
            return ParameterDiff(
                name=ref.name,
                change_type=ChangeType.ADDED if a is None else ChangeType.REMOVED,
                old_shape=None if a is None else a.shape,
                new_shape=None if b is None else b.shape,
                old_dtype=None if a is None else a.dtype.name,
                new_dtype=None if b is None else b.dtype.name,
                num_elements=ref.numel,
                old_stats=None if a is None else stats,
                new_stats=None if b is None else stats,
            )
        base = dict(
            name=b.name,
            old_shape=a.shape,
            new_shape=b.shape,
            old_dtype=a.dtype.name,
            new_dtype=b.dtype.name,
            num_elements=b.numel,
        )
        try:
            if a.shape != b.shape:
                return self._shape_changed(a, b, base)
            xa, xb = a.storage(), b.storage()  # bits only: no ml_dtypes for bf16/fp8
            same_dtype = a.dtype == b.dtype
            ctype = ChangeType.MODIFIED if same_dtype else ChangeType.DTYPE_CHANGED
            if not self.config.compute_element_wise:
                if same_dtype and metrics.bytes_equal(xa, xb):
                    ctype = ChangeType.UNCHANGED
                return ParameterDiff(change_type=ctype, **base)  # type: ignore[arg-type]
            workers, done = self.config.num_workers, _release_both(a, b)
            s = (
                metrics.stats_if_equal(xa, xb, dtype=b.dtype.name, done=done, workers=workers)
                if same_dtype
                else None
            )
            if s is not None:
                return ParameterDiff(
                    change_type=ChangeType.UNCHANGED,
                    l2_diff=0.0,
                    l1_diff=0.0,
                    max_diff=0.0,
                    mean_diff=0.0,
                    mean_signed_diff=0.0,
                    cosine_sim=1.0,
                    relative_change=0.0 if (s.norm or 0.0) > 0 else None,
                    change_ratio=0.0,
                    sign_flip_ratio=0.0,
                    finite_pairs=b.numel - s.nan_count - s.inf_count,
                    old_stats=s,
                    new_stats=s,
                    **base,  # type: ignore[arg-type]
                )
            m = metrics.diff_arrays(
                xa,
                xb,
                self.config.change_threshold,
                dtypes=(a.dtype.name, b.dtype.name),
                done=done,
                workers=workers,
            )
            low_rank = self._low_rank(a, b, xa, xb) if ctype is ChangeType.MODIFIED else None
            return _from_metrics(ctype, base, m, low_rank=low_rank)
        finally:
            a.release()
            b.release()

    def _shape_changed(self, a: TensorRef, b: TensorRef, base: dict[str, Any]) -> ParameterDiff:
        # A vocabulary resize (an embedding or output head whose rows were added or cut, the
        # trailing dimensions kept): the leading rows are the same parameters, so compare
        # them and count the new rows. Any other shape change (channels 256 -> 1024) has no
        # rows in common that mean the same thing: no metric, only each side's statistics.
        resizable = (
            is_vocabulary(b.name)
            and len(a.shape) == len(b.shape) >= 1
            and a.shape[1:] == b.shape[1:]
            and a.dtype.is_float
            and b.dtype.is_float
        )
        if not (resizable and self.config.compute_element_wise):
            sa = self._side_stats(a) if self.config.compute_element_wise else None
            sb = self._side_stats(b) if self.config.compute_element_wise else None
            return ParameterDiff(
                change_type=ChangeType.SHAPE_CHANGED, old_stats=sa, new_stats=sb, **base
            )
        rows = min(a.shape[0], b.shape[0])
        row_len = int(np.prod(a.shape[1:], dtype=np.int64)) if len(a.shape) > 1 else 1
        m = metrics.diff_arrays(
            head(a.storage(), rows * row_len),
            head(b.storage(), rows * row_len),
            self.config.change_threshold,
            dtypes=(a.dtype.name, b.dtype.name),
            done=_release_both(a, b),
            workers=self.config.num_workers,
        )
        return _from_metrics(
            ChangeType.SHAPE_CHANGED, base, m, overlap_rows=rows, added_rows=b.shape[0] - a.shape[0]
        )

    def _side_stats(self, ref: TensorRef) -> metrics.SideStats:
        try:
            return metrics.array_stats(
                ref.storage(),
                dtype=ref.dtype.name,
                done=ref.release_range,
                workers=self.config.num_workers,
            )
        finally:
            ref.release()

    def _low_rank(
        self, a: TensorRef, b: TensorRef, xa: metrics.Values, xb: metrics.Values
    ) -> dict[str, Any] | None:
        # low_rank=True: every 2-D delta, inline. "auto" runs after the metrics pass on a
        # budgeted selection (_auto_low_rank), so the default stays cheap on any checkpoint.
        if self.config.low_rank is not True or len(a.shape) != 2 or not a.dtype.is_float:
            return None
        from . import lowrank

        return lowrank.analyze_delta(
            dense(xa), dense(xb), a.shape, force=True, dtypes=(a.dtype.name, b.dtype.name)
        )

    def _auto_low_rank(
        self,
        diffs: list[ParameterDiff],
        old: Checkpoint,
        new: Checkpoint,
        ordered_map: metrics.OrderedMap,
    ) -> list[ParameterDiff]:
        """Low-rank analysis where affordable: the most-changed 2-D deltas within a budget.

        Candidates are modified float matrices of at most ``lowrank.AUTO_MAX_ELEMENTS``
        elements, taken by relative change (largest first, then name) while their elements
        fit in ``lowrank.AUTO_BUDGET_ELEMENTS``, ``lowrank.AUTO_MAX_MATRICES`` at most: a rule
        on the data, not on timing, so two runs give the same report. Costs a second read of
        the chosen tensors only.
        """
        from . import lowrank

        eligible = [
            d
            for d in diffs
            if d.change_type is ChangeType.MODIFIED
            and d.new_shape is not None
            and len(d.new_shape) == 2
            and d.relative_change is not None
            and new.tensors[d.name].dtype.is_float
            and d.num_elements <= lowrank.AUTO_MAX_ELEMENTS
        ]
        eligible.sort(key=lambda d: (-(d.relative_change or 0.0), natural_key(d.name)))
        chosen: set[str] = set()
        budget = lowrank.AUTO_BUDGET_ELEMENTS
        for d in eligible:
            if len(chosen) == lowrank.AUTO_MAX_MATRICES:
                break
            if d.num_elements <= budget:
                chosen.add(d.name)
                budget -= d.num_elements

        def analyze(d: ParameterDiff) -> ParameterDiff:
            a, b = old.tensors[d.name], new.tensors[d.name]
            try:
                # dense(): a quantized side decodes whole, within AUTO_MAX_ELEMENTS
                info = lowrank.analyze_delta(
                    dense(a.storage()),
                    dense(b.storage()),
                    a.shape,
                    dtypes=(a.dtype.name, b.dtype.name),
                )
            finally:
                a.release()
                b.release()
            return dataclasses.replace(d, low_rank=info)

        # Only the chosen go to the pool: a future per tensor of a large checkpoint costs more
        # than the analyses themselves.
        picked = [d for d in diffs if d.name in chosen]
        analysed = {d.name: r for d, r in zip(picked, ordered_map(analyze, picked), strict=True)}
        return [analysed.get(d.name, d) for d in diffs]


def is_vocabulary(name: str) -> bool:
    """An embedding or output-head tensor (``layers``' built-in rules): the only tensors
    whose first-axis resize is compared over the rows both sides have."""
    return builtin_layer_type(name) in (EMBEDDING, HEAD)


def _exact_facts(s: metrics.SideStats | None) -> tuple[Any, ...] | None:
    """The statistics equal bytes always share, whichever pass computed them (sums such as
    the mean or norm may round differently in a pair pass and a one-side pass)."""
    if s is None:
        return None
    return (s.min, s.max, s.zero_fraction, s.nan_count, s.inf_count)


def _label_pairs(
    diffs: list[ParameterDiff], pairing: alignment.Pairing, old: Checkpoint, new: Checkpoint
) -> list[ParameterDiff]:
    """Mark what name pairing decided: the old name of tensors paired by a rule or a rename
    (a rename's pair came out unchanged: the pass confirmed its bytes), and the tensors on
    one side only that are tied duplicates of a tensor both sides keep."""
    both = [d.name for d in diffs if d.old_shape is not None and d.new_shape is not None]
    ties: dict[str, alignment.Tie] = {}
    for ckpt, kind, side in ((old, ChangeType.REMOVED, "old"), (new, ChangeType.ADDED, "new")):
        lone = [d.name for d in diffs if d.change_type is kind]
        if not lone:
            continue
        stats = {d.name: _exact_facts(getattr(d, f"{side}_stats")) for d in diffs}
        ties.update((t.name, t) for t in alignment.find_ties(ckpt, lone, both, stats))
    out = []
    for d in diffs:
        tie = ties.get(d.name)
        if tie is not None:
            out.append(
                dataclasses.replace(
                    d, change_type=ChangeType.TIED, tied_to=tie.kept, tied_by=tie.evidence
                )
            )
        elif d.name in pairing.old_names:
            renamed = d.name in pairing.renamed and d.change_type is ChangeType.UNCHANGED
            out.append(
                dataclasses.replace(
                    d,
                    change_type=ChangeType.RENAMED if renamed else d.change_type,
                    old_name=pairing.old_names[d.name],
                )
            )
        else:
            out.append(d)
    return out


def _info(
    name: str, shape: tuple[int, ...] | None, dtype: str | None, s: metrics.SideStats | None
) -> TensorInfo | None:
    if shape is None or dtype is None:
        return None
    numel = 1
    for n in shape:
        numel *= n
    size = BY_NAME[dtype].itemsize if dtype in BY_NAME else 0
    return TensorInfo(
        name=name,
        shape=shape,
        dtype=dtype,
        numel=numel,
        nbytes=numel * size,
        mean=s.mean if s else None,
        std=s.std if s else None,
        min=s.min if s else None,
        max=s.max if s else None,
        l2_norm=s.norm if s else None,
        zero_fraction=s.zero_fraction if s and s.zero_fraction is not None else 0.0,
        nan_count=s.nan_count if s else 0,
        inf_count=s.inf_count if s else 0,
    )


def _release_both(a: TensorRef, b: TensorRef) -> metrics.Done:
    """The ``done`` hook of a pair: each read part's pages go back to both readers."""

    def done(start: int, stop: int) -> None:
        a.release_range(start, stop)
        b.release_range(start, stop)

    return done


def _from_metrics(
    ctype: ChangeType, base: dict[str, Any], m: metrics.PairMetrics, **extra: Any
) -> ParameterDiff:
    return ParameterDiff(
        change_type=ctype,
        l2_diff=m.l2_diff,
        l1_diff=m.l1_diff,
        max_diff=m.max_diff,
        mean_diff=m.mean_diff,
        mean_signed_diff=m.mean_signed_diff,
        cosine_sim=m.cosine_sim,
        relative_change=m.relative_change,
        change_ratio=m.change_ratio,
        sign_flip_ratio=m.sign_flip_ratio,
        finite_pairs=m.finite_pairs,
        old_stats=m.old,
        new_stats=m.new,
        **base,
        **extra,
    )


def _avg(pairs: list[tuple[float, int]], weighted: bool) -> float:
    if not pairs:
        return math.nan
    if weighted:
        w = sum(n for _, n in pairs)
        if w > 0:
            return math.fsum(v * n for v, n in pairs) / w
    return math.fsum(v for v, _ in pairs) / len(pairs)


def summarize(
    diffs: list[ParameterDiff],
    config: DiffConfig,
    old: Checkpoint | None = None,
    new: Checkpoint | None = None,
    *,
    name_mapping: NameMapping | None = None,
) -> DiffSummary:
    """Totals over every tensor pair (unchanged ones included)."""
    count = {t: 0 for t in ChangeType}
    for d in diffs:
        count[d.change_type] += 1
    weighted = config.normalize_by_size
    compared = [
        d
        for d in diffs
        if d.change_type in (ChangeType.MODIFIED, ChangeType.UNCHANGED, ChangeType.DTYPE_CHANGED)
    ]
    # Buffers (rotary inv_freq, BatchNorm running statistics, integer tensors) are not
    # trained: the averages say what training did, so they are left out (and counted).
    buffers = [d for d in compared if layers.is_buffer(d.name, d.new_dtype or d.old_dtype)]
    measured = [d for d in compared if not layers.is_buffer(d.name, d.new_dtype or d.old_dtype)]
    l2 = [(d.l2_diff, d.num_elements) for d in measured if d.l2_diff is not None]
    all_l2 = [d.l2_diff for d in compared if d.l2_diff is not None]
    rel = [(d.relative_change, d.num_elements) for d in measured if d.relative_change is not None]
    cos = [(d.cosine_sim, d.num_elements) for d in measured if d.cosine_sim is not None]
    ranked = sorted(
        (d for d in diffs if d.relative_change is not None and d.is_changed),
        key=lambda d: (-(d.relative_change or 0.0), d.name),
    )
    changed_elements = sum(round((d.change_ratio or 0.0) * (d.finite_pairs or 0)) for d in compared)
    most, least = _layer_ranking(compared)
    nonfinite = [d.name for d in diffs if d.nonfinite_new > 0]
    excluded = {
        "added": count[ChangeType.ADDED],
        "removed": count[ChangeType.REMOVED],
        "shape_changed": count[ChangeType.SHAPE_CHANGED],
        "buffers": len(buffers),
        "nonfinite": 0,
        "zero_norm": 0,
        "not_measured": 0,
    }
    for d in measured:
        if d.relative_change is None:
            reason = (
                "not_measured"
                if d.finite_pairs is None
                else "nonfinite"
                if d.finite_pairs == 0
                else "zero_norm"
            )
            excluded[reason] += 1
    return DiffSummary(
        total_parameters=len(diffs),
        modified_parameters=count[ChangeType.MODIFIED],
        unchanged_parameters=count[ChangeType.UNCHANGED],
        added_parameters=count[ChangeType.ADDED],
        removed_parameters=count[ChangeType.REMOVED],
        shape_changed_parameters=count[ChangeType.SHAPE_CHANGED],
        dtype_changed_parameters=count[ChangeType.DTYPE_CHANGED],
        renamed_parameters=count[ChangeType.RENAMED],
        tied_parameters=count[ChangeType.TIED],
        old_num_elements=old.num_parameters
        if old is not None
        else sum(d.num_elements for d in diffs if d.old_shape is not None),
        new_num_elements=new.num_parameters
        if new is not None
        else sum(d.num_elements for d in diffs if d.new_shape is not None),
        changed_elements=changed_elements,
        avg_l2_diff=_avg(l2, weighted),
        avg_relative_change=_avg(rel, weighted),
        max_relative_change=max((v for v, _ in rel), default=math.nan),
        avg_cosine_similarity=_avg(cos, weighted),
        min_cosine_similarity=min((v for v, _ in cos), default=math.nan),
        nonfinite_tensors=nonfinite,
        top_changed_layers=[d.name for d in ranked[: config.top_k_layers]],
        averaged_tensors=len(rel),
        cosine_tensors=len(cos),
        excluded={k: v for k, v in excluded.items() if v},
        old_path=old.path if old is not None else None,
        new_path=new.path if new is not None else None,
        old_format=old.format if old is not None else None,
        new_format=new.format if new is not None else None,
        name_mapping=name_mapping.to_dict() if name_mapping is not None else None,
        unchanged_tensors=[d.name for d in diffs if d.change_type is ChangeType.UNCHANGED],
        total_l2_diff=math.fsum(all_l2) if all_l2 else None,
        most_changed_layers=most[: config.top_k_layers],
        least_changed_layers=least[: config.top_k_layers],
    )


def _layer_ranking(compared: list[ParameterDiff]) -> tuple[list[str], list[str]]:
    """Layers (tensor name less its last part) by their largest relative change: (changed
    layers, most first; all measured layers, least first). Ties by natural name order."""
    score: dict[str, float] = {}
    for d in compared:
        if d.relative_change is None:
            continue
        layer = d.name.rsplit(".", 1)[0]
        change = d.relative_change if d.is_changed else 0.0
        score[layer] = max(score.get(layer, 0.0), change)
    # Natural order first, then a stable sort by score: ties stay in natural order, as with a
    # (score, natural_key) key, without a key tuple per layer (20,000 layers: twice as fast).
    layers = natural_sorted(score)
    most = sorted((n for n in layers if score[n] > 0), key=lambda n: -score[n])
    least = sorted(layers, key=score.__getitem__)
    return most, least


def compare_checkpoints(
    old_path: str | os.PathLike[str] | Checkpoint,
    new_path: str | os.PathLike[str] | Checkpoint,
    config: DiffConfig | None = None,
    **config_overrides: Any,
) -> tuple[list[ParameterDiff], DiffSummary]:
    """Load and diff two checkpoints: the original API's one-call entry point."""
    if config is None:
        config = DiffConfig(**config_overrides)
    elif config_overrides:
        raise TypeError("pass either config= or keyword overrides, not both")
    return ModelDiff(config).diff(old_path, new_path)
