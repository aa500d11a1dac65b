"""Running the checks on files: one ``Target`` (what to compare) -> one ``FileResult``.

A target names the new version of a checkpoint and, when there is one, its base version
(local files, or files at git revisions opened through ``gitdriver.git``). A pair is
diffed with every tensor kept and judged by the analyzer under the policy
(``Policy.analysis_config``); a file without a base gets the analyzer's single-file checks
(``DiffAnalyzer.health``). ``check.violations`` keeps what the policy levels error or
warning. Unreadable input becomes ``FileResult.error`` (never a fallback), so one bad file
does not hide the others. Nothing here prints or exits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_diff.gitdriver.spec import open_spec

from model_diff.analysis import DiffAnalyzer
from model_diff.checkpoint import Checkpoint
from model_diff.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, ModelDiffError
from model_diff.formats import open_checkpoint
from model_diff.pipeline import compare

from .check import Violation, fails, violations
from .policy import Policy

#: Opens one side of a target (a local file, a file at a revision); errors name the side.
Opener = Callable[[], Checkpoint]


@dataclass(frozen=True)
class Target:
    """A checkpoint to check: its display path, its new side and (optionally) its base."""

    path: str
    new: Opener
    new_label: str
    old: Opener | None = None
    old_label: str | None = None
    old_path: str | None = None  # set when the file was renamed
    change: str | None = None  # added | modified | renamed, when it comes from a git change


@dataclass
class FileResult:
    """The outcome for one checkpoint file."""

    path: str
    mode: str  # "diff" (against a base) | "health" (single file)
    old_label: str | None = None
    new_label: str | None = None
    old_path: str | None = None
    change: str | None = None
    violations: list[Violation] = field(default_factory=list)
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: The full Markdown diff report (``create_diff_report``), when asked for.
    detail: str | None = None

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
            "path": self.path,
            "mode": self.mode,
            "status": self.status,
            "old": self.old_label,
            "new": self.new_label,
            "old_path": self.old_path,
            "change": self.change,
            "error": self.error,
            "stats": self.stats,
            "violations": [v.to_dict() for v in self.violations],
        }


def local_opener(path: str) -> Opener:
    """A checkpoint on disk (an LFS pointer is resolved from the store by the reader)."""
    return lambda: open_checkpoint(path)


def spec_opener(spec: str) -> Opener:
    """A path on disk or ``REV:path`` from git history (``gitdriver.spec.open_spec``)."""
    return lambda: open_spec(spec)


def check_target(target: Target, policy: Policy, *, detail: bool = False) -> FileResult:
    """Check one target: diff + policy when it has a base, else the single-file checks.

    ``detail`` also renders the pair's full Markdown report into ``FileResult.detail``.
    """
    res = FileResult(
        path=target.path,
        mode="diff" if target.old else "health",
        old_label=target.old_label,
        new_label=target.new_label,
        old_path=target.old_path,
        change=target.change,
    )
    config = policy.analysis_config()
    try:
        with target.new() as new:
            if target.old is None:
                infos = new.tensor_info
                res.violations = violations(DiffAnalyzer(config).health(infos, new.unchecked))
                res.stats = {"tensors": len(infos), "parameters": new.num_parameters}
                return res
            with target.old() as old:
                result = compare(
                    old,
                    new,
                    old_label=target.old_label,
                    new_label=target.new_label,
                    analysis_config=config,
                )
                summary = result.summary
                res.violations = violations(result.analysis.insights)
                if detail:
                    res.detail = result.report(
                        "markdown",
                        old_name=target.old_label or target.path,
                        new_name=target.new_label or target.path,
                    )
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
    return res


def check_files(old: str, new: str, policy: Policy) -> FileResult:
    """``model-diff check OLD NEW``: two paths, either of which may be ``REV:path``."""
    return check_target(
        Target(path=new, new=spec_opener(new), new_label=new, old=spec_opener(old), old_label=old),
        policy,
    )


def exit_code(results: Sequence[FileResult], fail_on: str) -> int:
    """2 when any input was unreadable, 1 when violations fail per ``fail_on``, else 0."""
    if any(r.error is not None for r in results):
        return EXIT_USAGE
    if fails((v for r in results for v in r.violations), fail_on):
        return EXIT_CHECK_FAILED
    return EXIT_OK
