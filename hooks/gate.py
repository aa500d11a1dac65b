"""Running the checks on files: one ``Target`` (what to compare) -> one ``FileResult``.

A target names the new version of a checkpoint and, when there is one, its base version
(local files, or files at git revisions that ``gitrepo`` materialises). A pair is diffed with
every tensor kept and judged by ``check.evaluate``; a file without a base gets the
single-file health checks. Unreadable input becomes ``FileResult.error`` (never a fallback),
so one bad file does not hide the others. Nothing here prints or exits.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_diff.checkpoint import Checkpoint
from model_diff.diff import DiffConfig, ModelDiff
from model_diff.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, ModelDiffError
from model_diff.formats import open_checkpoint

from .check import Violation, evaluate, evaluate_health, fails, sort_violations
from .policy import Policy

#: Materialises one side of a target into a local file inside the given temp dir.
Opener = Callable[[Path], Path]


@dataclass(frozen=True)
class Target:
    """A checkpoint to check: its display path, its new side and (optionally) its base."""

    path: str
    new: Opener
    new_label: str
    old: Opener | None = None
    old_label: str | None = None
    old_path: str | None = None  # set when the file was renamed


@dataclass
class FileResult:
    """The outcome for one checkpoint file."""

    path: str
    mode: str  # "diff" (against a base) | "health" (single file)
    old_label: str | None = None
    new_label: str | None = None
    old_path: str | None = None
    violations: list[Violation] = field(default_factory=list)
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "unreadable"
        if any(v.level == "error" for v in self.violations):
            return "failed"
        if self.violations:
            return "warnings"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "mode": self.mode, "status": self.status,
            "old": self.old_label, "new": self.new_label, "old_path": self.old_path,
            "error": self.error, "stats": self.stats,
            "violations": [v.to_dict() for v in self.violations],
        }


def _open(opener: Opener, tmp: Path, label: str) -> Checkpoint:
    local = opener(tmp)
    try:
        return open_checkpoint(local)
    except ModelDiffError as e:
        # Re-label: the user knows "HEAD:model.safetensors", not our temp copy.
        if e.path is not None and (Path(e.path) == local or e.path.startswith(str(tmp))):
            e.path = label
        raise


def _analyze(diffs: Sequence[Any], summary: Any) -> dict[str, Any]:
    try:
        from model_diff.analysis import DiffAnalyzer
    except ImportError:  # analysis lands from its own branch; until then, policy rules only
        return {}
    result: dict[str, Any] = DiffAnalyzer().analyze(list(diffs), summary)
    return result


def check_target(target: Target, policy: Policy) -> FileResult:
    """Check one target: diff + policy when it has a base, else the single-file checks."""
    res = FileResult(path=target.path, mode="diff" if target.old else "health",
                     old_label=target.old_label, new_label=target.new_label,
                     old_path=target.old_path)
    with tempfile.TemporaryDirectory(prefix="model-diff-check-") as d:
        tmp = Path(d)
        try:
            new = _open(target.new, tmp, target.new_label)
            with new:
                if target.old is None:
                    infos = new.tensor_info
                    res.violations = evaluate_health(infos)
                    res.stats = {"tensors": len(infos), "parameters": new.num_parameters}
                    return res
                old = _open(target.old, tmp, target.old_label or target.path)
                with old:
                    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(old, new)
                    analysis = _analyze(diffs, summary)
                    res.violations = evaluate(diffs, summary, analysis, policy)
                    res.stats = {
                        "tensors": summary.total_parameters,
                        "changed": summary.changed_parameters,
                        "unchanged": summary.unchanged_parameters,
                        "max_relative_change": summary.max_relative_change,
                        "min_cosine": summary.min_cosine_similarity,
                    }
        except ModelDiffError as e:
            res.error = str(e)
            res.violations = []
    res.violations = sort_violations(res.violations)
    return res


def check_files(old: str, new: str, policy: Policy) -> FileResult:
    """``model-diff check OLD NEW``: two local paths."""
    return check_target(Target(path=new, new=lambda _t: Path(new), new_label=new,
                               old=lambda _t: Path(old), old_label=old), policy)


def exit_code(results: Sequence[FileResult], fail_on: str) -> int:
    """2 when any input was unreadable, 1 when violations fail per ``fail_on``, else 0."""
    if any(r.error is not None for r in results):
        return EXIT_USAGE
    if fails((v for r in results for v in r.violations), fail_on):
        return EXIT_CHECK_FAILED
    return EXIT_OK
