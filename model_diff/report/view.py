"""The format-neutral content of a report, built once and rendered by every format.

``build_view`` turns (diffs, summary, analysis, options) into a ``ReportView``: tensors
grouped as added / removed / shape-changed / dtype-changed / modified / unchanged in natural
name order, the counts, the insights ordered by severity, the layer-type rows and the
selection of tensors that fits ``max_layers_display``. It tolerates ``analysis=None`` and
missing optional keys. It must not format for a particular output (no markup here).
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..analysis import Analysis, DepthEntry, LayerStats
from ..diff import ChangeType, DiffConfig, DiffSummary, ParameterDiff
from ..findings import Insight
from ..layers import classify_layer
from ..name_groups import group_names
from ..naming import natural_key
from .config import VisualizationConfig

#: Report groups in display order: (key = ChangeType value, heading).
GROUPS: tuple[tuple[str, str], ...] = (
    ("added", "Added"),
    ("removed", "Removed"),
    ("shape_changed", "Shape changed"),
    ("dtype_changed", "Dtype changed"),
    ("modified", "Modified"),
    ("unchanged", "Unchanged"),
)
GROUP_TITLES = dict(GROUPS)
#: Tensors paired across names (model_diff.alignment): listed apart from the change groups,
#: they are no change of content. (key = ChangeType value, heading)
PAIRED: tuple[tuple[str, str], ...] = (("renamed", "Renamed"), ("tied", "Tied duplicates"))
STRUCTURAL = ("added", "removed", "shape_changed", "dtype_changed")
#: DiffSummary.excluded reasons, in words.
_EXCLUDED = {
    "added": "added",
    "removed": "removed",
    "shape_changed": "shape-changed",
    "buffers": "buffer(s)",
    "nonfinite": "all-NaN/Inf",
    "zero_norm": "all-zero before",
    "not_measured": "not compared element-wise",
}


@dataclass
class ReportView:
    old_name: str
    new_name: str
    summary: DiffSummary
    config: VisualizationConfig
    inputs: dict[str, dict[str, Any]]
    diff_config: dict[str, Any] | None
    counts: dict[str, int]
    #: Listed tensors per group (every group key present; unchanged only when the diff kept them).
    groups: dict[str, list[ParameterDiff]]
    #: The tensors the tables show, per group, after ``max_layers_display``.
    shown: dict[str, list[ParameterDiff]]
    #: The judge's findings (None: the report was asked for without an analysis).
    analysis: Analysis | None
    #: Renamed tensors and tied duplicates, by ``PAIRED`` key (present keys only)
    paired: dict[str, list[ParameterDiff]] = field(default_factory=dict)

    def pairing_lines(self, limit: int = 8) -> list[tuple[str, str]]:
        """(label, text) per renamed tensor and tied duplicate, at most ``limit`` per kind
        (then "and N more"): what every format states beside the name mapping."""
        out: list[tuple[str, str]] = []
        for key, label in (("renamed", "renamed"), ("tied", "tied")):
            members = self.paired.get(key, [])
            for d in members[:limit]:
                out.append((label, describe_pairing(d)))
            if len(members) > limit:
                out.append((label, f"and {len(members) - limit} more"))
        return out

    @property
    def insights(self) -> tuple[Insight, ...]:
        return self.analysis.insights if self.analysis is not None else ()

    @property
    def tensor_types(self) -> dict[str, str]:
        """Every tensor of the pair and its layer type (the analysis's classification when
        it has its rows): what insight tensor lists are grouped against."""
        rows = self.analysis.rows if self.analysis is not None else ()
        if rows:
            return {r.name: r.layer_type for r in rows}
        return {d.name: classify_layer(d.name) for v in self.groups.values() for d in v}

    def insight_tensors(self, ins: Insight, shown: int = 8) -> list[str]:
        """The insight's tensors grouped by block and layer type (``name_groups``), at most
        ``shown`` phrases then "and N more"; empty when its description already names each
        phrase's block run or tensor (the analyzer's own insights do: a report never lists
        them twice)."""
        phrases = group_names(ins.tensors, self.tensor_types) if ins.tensors else []
        if all(p.split(": ")[0] in ins.description for p in phrases[:shown]):
            return []
        more = len(phrases) - shown
        return phrases[:shown] + ([f"and {more} more"] if more > 0 else [])

    @property
    def layer_rows(self) -> tuple[LayerStats, ...]:
        return self.analysis.layer_analysis if self.analysis is not None else ()

    @property
    def depth_profile(self) -> tuple[DepthEntry, ...]:
        return self.analysis.depth_profile if self.analysis is not None else ()

    @property
    def pattern(self) -> str | None:
        return self.analysis.change_pattern if self.analysis is not None else None

    @property
    def frozen_layers(self) -> tuple[str, ...]:
        return self.analysis.frozen if self.analysis is not None else ()

    @property
    def low_rank_summary(self) -> dict[str, Any] | None:
        """The analysis's low-rank counts (each tensor's record is in its own row)."""
        lr = self.analysis.low_rank if self.analysis is not None else None
        return {k: v for k, v in lr.items() if k != "tensors"} if lr else None

    @property
    def quantization(self) -> Mapping[str, Any] | None:
        """``analysis["quantization"]`` when one side is a quantization of the other."""
        return self.analysis.quantization if self.analysis is not None else None

    @property
    def diverged(self) -> str | None:
        """The first thing a Summary says when the new checkpoint holds NaN/Inf."""
        bad = len(self.summary.nonfinite_tensors)
        if not bad:
            return None
        return (
            f"NaN/Inf in {bad} of {self.summary.total_parameters} tensors of the new "
            f"checkpoint: training diverged or the checkpoint is corrupt"
        )

    @property
    def average_base(self) -> str | None:
        """What the Summary's averages are over, when tensors are left out of them:
        "over 12 of 16 tensors; 4 all-NaN/Inf excluded" (None when every tensor is in)."""
        s = self.summary
        excluded = {k: v for k, v in s.excluded.items() if v}
        if not excluded:
            return None
        why = ", ".join(f"{v} {_EXCLUDED.get(k, k)}" for k, v in excluded.items())
        return f"over {s.averaged_tensors} of {s.total_parameters} tensors; {why} excluded"

    @property
    def name_mapping(self) -> str | None:
        """The cross-format name mapping in force, in one line (None when none was)."""
        m = self.summary.name_mapping
        if not m:
            return None
        side, text = m.get("side"), str(m.get("description", ""))
        return f"{side} side: {text}" if side else text  # rules say their side themselves

    def quantization_rows(self, key: str) -> list[tuple[str, Mapping[str, Any]]]:
        """(label, group) rows of the quantization section's ``types`` or ``layer_types``."""
        q = self.quantization or {}
        groups = q.get(key) or {}
        return [(str(k), g) for k, g in groups.items() if isinstance(g, Mapping)]

    @property
    def listed_changed(self) -> int:
        return sum(len(self.groups[k]) for k in self.groups if k != "unchanged")

    @property
    def shown_count(self) -> int:
        return sum(len(v) for k, v in self.shown.items() if k != "unchanged")

    @property
    def truncated(self) -> bool:
        return self.shown_count < self.listed_changed

    @property
    def changed_count(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "unchanged")

    @property
    def total_count(self) -> int:
        # renamed tensors are tensors of both sides; a tied duplicate is not a tensor of its own
        return sum(self.counts.values()) + self.summary.renamed_parameters

    @property
    def low_rank_diffs(self) -> list[ParameterDiff]:
        return [d for d in self.groups["modified"] if d.low_rank]


def jsonable(obj: Any) -> Any:
    """A JSON-safe deep copy: non-finite floats -> None, tuples/sets -> lists, dict keys sorted.

    Sorting keys makes the output independent of how a producer happened to build its
    dicts (set iteration order varies with PYTHONHASHSEED).
    """
    # The plain built-in types first, by exact type (a report's analysis is thousands of
    # them; None and bool, which has no subclasses, end here); subclasses (str/int enums,
    # numpy scalars) and everything else take the checks below.
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is float:
        return obj if math.isfinite(obj) else None
    if t is dict:
        return {str(k): jsonable(obj[k]) for k in sorted(obj, key=str)}
    if t is list or t is tuple:
        return [jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        return jsonable(obj.item())  # numpy scalar
    if isinstance(obj, Mapping):
        return {str(k): jsonable(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (set, frozenset)):
        return [jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, Sequence) or hasattr(obj, "tolist"):
        seq = obj.tolist() if hasattr(obj, "tolist") else obj
        return [jsonable(v) for v in seq]
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    return str(obj)


def inputs_from_checkpoints(old: Any, new: Any) -> dict[str, dict[str, Any]]:
    """The ``inputs`` argument of ``create_diff_report`` from two open ``Checkpoint`` objects."""
    return {"old": old.describe(), "new": new.describe()}


_INPUT_KEYS = ("path", "format", "num_tensors", "num_parameters", "size_bytes", "dtypes")
#: Shorter spellings accepted in ``inputs`` (the CLI's checkpoint descriptions use them).
_INPUT_ALIASES = {"tensors": "num_tensors", "parameters": "num_parameters", "bytes": "size_bytes"}


def _derive_inputs(
    diffs: Sequence[ParameterDiff], summary: DiffSummary, given: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    complete = len(diffs) == summary.total_parameters  # unchanged tensors were kept
    out: dict[str, dict[str, Any]] = {}
    for side in ("old", "new"):
        gone = summary.added_parameters if side == "old" else summary.removed_parameters
        # a tied duplicate exists on one side only (always listed)
        gone += sum(
            1
            for d in diffs
            if d.change_type is ChangeType.TIED
            and (d.old_shape if side == "old" else d.new_shape) is None
        )
        derived: dict[str, Any] = {
            "path": getattr(summary, f"{side}_path"),
            "format": getattr(summary, f"{side}_format"),
            "num_tensors": summary.total_parameters - gone,
            "num_parameters": getattr(summary, f"{side}_num_elements"),
            "size_bytes": None,
            "dtypes": None,
        }
        if complete:
            counts: dict[str, int] = {}
            for d in diffs:
                dt = d.old_dtype if side == "old" else d.new_dtype
                shape = d.old_shape if side == "old" else d.new_shape
                if dt is not None and shape is not None:
                    counts[dt] = counts.get(dt, 0) + math.prod(shape)
            derived["dtypes"] = dict(sorted(counts.items()))
        raw = (given or {}).get(side) or {}
        extra = {_INPUT_ALIASES.get(k, k): v for k, v in raw.items()}
        merged = {k: jsonable(extra.get(k, derived[k])) for k in _INPUT_KEYS}
        for k in sorted(extra):
            if k not in merged:
                merged[k] = jsonable(extra[k])
        out[side] = merged
    return out


def describe_pairing(d: ParameterDiff) -> str:
    """``old -> new (same bytes)`` for a rename; for a tied duplicate, which tensor it
    duplicates, on which side, and the evidence."""
    if d.change_type is ChangeType.TIED:
        side = "old" if d.new_shape is None else "new"
        how = "same storage" if d.tied_by == "storage" else "same bytes"
        verb = "dropped" if side == "old" else "added"
        return f"{d.name}: tied duplicate of {d.tied_to} {verb} ({how} in the {side} file)"
    return f"{d.old_name} -> {d.name} (same bytes)"


def _rank_key(d: ParameterDiff, position: int) -> tuple[int, float, int]:
    """Most important first: structural changes, non-finite values, then relative change;
    ties in natural name order (``position`` in the naturally sorted list)."""
    structural = d.change_type.value in STRUCTURAL
    nonfinite = d.nonfinite_new > 0
    rel = d.relative_change if d.relative_change is not None else -1.0
    tier = 0 if structural else (1 if nonfinite else 2)
    return (tier, -rel, position)


def build_view(
    diffs: Sequence[ParameterDiff],
    summary: DiffSummary,
    analysis: Analysis | Mapping[str, Any] | None,
    *,
    old_name: str | None = None,
    new_name: str | None = None,
    config: VisualizationConfig | None = None,
    inputs: Mapping[str, Any] | None = None,
    diff_config: DiffConfig | Mapping[str, Any] | None = None,
) -> ReportView:
    config = config or VisualizationConfig()
    groups: dict[str, list[ParameterDiff]] = {k: [] for k, _ in GROUPS}
    paired: dict[str, list[ParameterDiff]] = {}
    for d in diffs:
        key = ChangeType(d.change_type).value
        (groups[key] if key in groups else paired.setdefault(key, [])).append(d)
    for members in [*groups.values(), *paired.values()]:
        members.sort(key=lambda d: natural_key(d.name))
    counts = {
        "added": summary.added_parameters,
        "removed": summary.removed_parameters,
        "shape_changed": summary.shape_changed_parameters,
        "dtype_changed": summary.dtype_changed_parameters,
        "modified": summary.modified_parameters,
        "unchanged": summary.unchanged_parameters,
    }
    changed = [d for k, v in groups.items() if k != "unchanged" for d in v]
    ranked = heapq.nsmallest(
        config.max_layers_display, range(len(changed)), key=lambda i: _rank_key(changed[i], i)
    )
    keep = {id(changed[i]) for i in ranked}
    shown = {k: [d for d in v if id(d) in keep] for k, v in groups.items()}
    shown["unchanged"] = []

    if analysis is not None and not isinstance(analysis, Analysis):
        analysis = Analysis.from_dict(analysis)  # the original API passes analyze()'s dict
    if diff_config is not None and not isinstance(diff_config, Mapping):
        diff_config = diff_config.to_dict()
    view = ReportView(
        old_name=old_name or _default_name(summary.old_path, "old"),
        new_name=new_name or _default_name(summary.new_path, "new"),
        summary=summary,
        config=config,
        inputs=_derive_inputs(diffs, summary, inputs),
        diff_config=jsonable(diff_config) if diff_config is not None else None,
        counts=counts,
        groups=groups,
        shown=shown,
        analysis=analysis,
        paired=paired,
    )
    return view


def _default_name(path: str | None, side: str) -> str:
    return path if path else side


def block_profile(profile: Sequence[DepthEntry], max_rows: int = 24) -> list[tuple[str, float]]:
    """Average relative change per block (all layer types, weighted by tensor count).

    More than ``max_rows`` blocks are merged into equal runs of consecutive blocks
    ("12-15"), so a 96-block model still fits a screen.
    """
    sums: dict[int, list[float]] = {}
    for p in profile:
        block, value = p.block, p.avg_change
        if value is None:
            continue  # no tensor of the block has a defined change: nothing to average
        count = p.count or 1
        acc = sums.setdefault(block, [0.0, 0.0])
        acc[0] += value * count
        acc[1] += count
    blocks = sorted(sums)
    if not blocks:
        return []
    per = math.ceil(len(blocks) / max_rows)
    rows = []
    for i in range(0, len(blocks), per):
        run = blocks[i : i + per]
        total = sum(sums[b][0] for b in run)
        weight = sum(sums[b][1] for b in run)
        label = str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
        rows.append((label, total / weight))
    return rows
