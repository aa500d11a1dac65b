"""The git merge driver and mergetool: checkpoints merged by git, tensor by tensor.

``model-diff merge-driver %O %A %B %P`` (``merge.model-diff.driver``, written by ``install``):
git runs it from the top of the work tree on three temporary files (ancestor, ours, theirs)
when both branches changed a file whose ``merge`` attribute is ``model-diff``; ``%P`` is the
file's path. ``merge_file`` merges them with ``model_diff.merge.merge_checkpoints`` and the
strategy of ``git config model-diff.mergeStrategy`` (default ``fail``):

- merged: the result goes into ``%A`` and the driver exits 0. With Git LFS the three files are
  pointers: the objects are read from the store, the result is stored as a new object
  (``formats.lfs.store_object``: sha256-named, ``lfs.storage`` respected) and ``%A`` gets its
  pointer, so git commits a pointer and checks out the merged checkpoint. The output is a
  pointer when OURS is one or the path's ``filter`` attribute is ``lfs``.
- conflicts left (or input that cannot be merged tensor by tensor: unreadable, a format with
  no writer, a missing LFS object): ``%A`` keeps OURS, the driver exits 1 and git reports a
  normal content conflict. For tensor conflicts the three-way report is written to
  ``<git dir>/model-diff/merge/<path>.txt`` and ``.html`` (``report_paths``), named on stderr.
  An internal error is a conflict too, with one line saying so: git never sees a crash.

``model-diff mergetool BASE LOCAL REMOTE MERGED`` (``git mergetool -t model-diff``):
``resolve_with_tool`` merges the three stages into MERGED with the configured strategy (or
``--strategy``) when that resolves everything; otherwise it returns the three-way analysis for
the command to show, and the file stays conflicted (exit 1, ``trustExitCode``).

This module never prints; ``main`` (the driver's entry point) writes its lines to stderr.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from model_diff import __version__
from model_diff.errors import ModelDiffError
from model_diff.formats import lfs
from model_diff.merge import STRATEGIES
from model_diff.terminal import printable

from . import git

if TYPE_CHECKING:
    from model_diff.checkpoint import Checkpoint
    from model_diff.merge import MergeResult
    from model_diff.threeway import ThreeWay

#: The config key naming the strategy for conflicts (``model-diff merge --strategy``).
STRATEGY_KEY = "model-diff.mergeStrategy"
#: Conflicting tensors listed on stderr before "and N more" (the report lists them all).
SHOWN_CONFLICTS = 20


@dataclass
class Resolution:
    """What the driver (or the mergetool) did with one file."""

    path: str
    merged: bool
    lines: list[str] = field(default_factory=list)  # what to tell the user
    result: MergeResult | None = None
    threeway: ThreeWay | None = None  # the analysis, when tensor conflicts were left
    reports: list[str] = field(default_factory=list)  # report files written


def configured_strategy(cwd: str | os.PathLike[str] | None = None) -> str:
    """``git config model-diff.mergeStrategy`` (any scope), ``fail`` when unset."""
    value = git.config_get([], STRATEGY_KEY, cwd=cwd)
    if value is None:
        return "fail"
    if value not in STRATEGIES:
        raise ModelDiffError(
            f"git config {STRATEGY_KEY} is {value!r}, not a merge strategy",
            hint=f"set it to one of: {', '.join(STRATEGIES)}",
        )
    return value


def report_paths(git_dir: str, path: str) -> tuple[str, str]:
    """Where the three-way report of a conflicted ``path`` goes: ``<git dir>/model-diff/
    merge/<path>.txt`` and ``.html`` (the work tree's own git dir: each linked worktree has
    its merges)."""
    base = os.path.join(git_dir, "model-diff", "merge", *path.split("/"))
    return base + ".txt", base + ".html"


def _open(file: str, path: str, side: str) -> Checkpoint:
    """One of git's temporary files (or an LFS pointer in one), named after ``path``."""
    from model_diff.formats import open_file

    return open_file(file, label=f"{git.display_path(path)} ({side})", name=path)


def _no_base(file: str | None) -> bool:
    """git gives an empty ancestor when there is none (both sides added the file)."""
    return file is None or not os.path.exists(file) or os.path.getsize(file) == 0


def _outcome_line(result: MergeResult, path: str, how: str) -> str:
    c = result.counts
    parts = [f"{c['ours']} from ours", f"{c['theirs']} from theirs", f"{c['kept']} unchanged"]
    if c["both"]:
        parts.append(f"{c['both']} changed alike")
    if c["removed"]:
        parts.append(f"{c['removed']} removed")
    if c["merged"]:
        parts.append(f"{c['merged']} merged by {result.strategy}")
    return f"model-diff: merged {printable(path)} tensor by tensor{how}: {', '.join(parts)}"


def _conflict_lines(result: MergeResult, path: str) -> list[str]:
    conflicts = result.conflicts
    n = len(conflicts)
    lines = [
        f"model-diff: CONFLICT in {printable(path)}: {n} conflicting tensor"
        f"{'s' if n != 1 else ''} (strategy {result.strategy}); ours kept"
    ]
    for t in conflicts[:SHOWN_CONFLICTS]:
        note = f": {t.note}" if t.note else ""
        lines.append(f"  CONFLICT ({t.conflict}) {printable(t.name)}{note}")
    if n > SHOWN_CONFLICTS:
        lines.append(f"  ... and {n - SHOWN_CONFLICTS} more (all in the report)")
    return lines


def _hint(path: str) -> str:
    return (
        f"hint: see what conflicts with `git mergetool -t model-diff -- {path}`; resolve with "
        f"`git config {STRATEGY_KEY} average|task-arithmetic|ties|ours|theirs` and merge "
        "again, or take one side whole with `git checkout --ours/--theirs`"
    )


def _analyse(base: Checkpoint | None, ours: Checkpoint, theirs: Checkpoint) -> ThreeWay:
    from model_diff.checkpoint import from_arrays
    from model_diff.threeway import compare3

    b = base if base is not None else from_arrays({}, path="(no common ancestor)")
    return compare3(b, ours, theirs, labels=(b.path, ours.path, theirs.path))


def _write_reports(result: MergeResult, three: ThreeWay, git_dir: str, path: str) -> list[str]:
    from model_diff.output import write_report
    from model_diff.report.threeway import render_threeway

    txt, html = report_paths(git_dir, path)
    os.makedirs(os.path.dirname(txt), exist_ok=True)
    head = [f"model-diff merge driver {__version__}", *_conflict_lines(result, path), ""]
    write_report(txt, "\n".join(head) + render_threeway(three, "text"))
    write_report(html, render_threeway(three, "html"))
    return [txt, html]


def _remove_reports(git_dir: str, path: str) -> None:
    for report in report_paths(git_dir, path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(report)


def merge_file(
    base: str, ours: str, theirs: str, path: str, *, cwd: str | os.PathLike[str] | None = None
) -> Resolution:
    """The merge driver: merge git's three files for ``path`` into ``ours`` (see the module
    docstring). Raises ``ModelDiffError`` for input that cannot be merged tensor by tensor
    (``ours`` is then untouched)."""
    from model_diff.merge import merge_checkpoints

    here = os.fspath(cwd) if cwd is not None else os.getcwd()
    repo = git.Repo.find(here)
    strategy = configured_strategy(here)
    store: str | None = None  # the common git dir whose LFS store gets the result
    if lfs.read_pointer(ours) is not None or (
        repo is not None and repo.attribute(path, "filter") == "lfs"
    ):
        if repo is None:
            raise ModelDiffError(
                f"{git.display_path(path)}: a Git LFS file merged outside a repository",
                hint="run the merge inside the repository",
            )
        store = repo.common_dir
    res = Resolution(path, merged=False)
    with contextlib.ExitStack() as stack:
        b = None if _no_base(base) else stack.enter_context(_open(base, path, "base"))
        o = stack.enter_context(_open(ours, path, "ours"))
        t = stack.enter_context(_open(theirs, path, "theirs"))
        out = ours
        if store is not None:
            out = os.path.join(lfs.temp_dir(store), f"model-diff-{secrets.token_hex(8)}")
        pointer: lfs.LFSPointer | None = None
        try:
            result = merge_checkpoints(b, o, t, out, strategy)
            res.result = result
            if result.written and store is not None:
                pointer = lfs.store_object(store, out)
                with open(ours, "wb") as f:
                    f.write(lfs.pointer_bytes(pointer))
        finally:
            if out != ours:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(out)
        if result.written:
            res.merged = True
            how = f" (Git LFS object {pointer.oid[:12]})" if pointer is not None else ""
            res.lines.append(_outcome_line(result, path, how))
            for item in result.tensors:
                if item.resolved_by is not None:
                    res.lines.append(
                        f"  resolved {item.conflict} conflict by {item.resolved_by}: "
                        f"{printable(item.name)}"
                    )
            if repo is not None:
                _remove_reports(repo.git_dir, path)
            return res
        res.lines += _conflict_lines(result, path)
        res.threeway = _analyse(b, o, t)
        if repo is not None:
            res.reports = _write_reports(result, res.threeway, repo.git_dir, path)
            shown = " and ".join(os.path.relpath(r, repo.top) for r in res.reports)
            res.lines.append(f"model-diff: three-way report: {printable(shown)}")
        res.lines.append(_hint(path))
    return res


def resolve_with_tool(
    base: str,
    local: str,
    remote: str,
    merged: str,
    *,
    strategy: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Resolution:
    """``git mergetool -t model-diff``: merge LOCAL and REMOTE (relative to BASE) into MERGED
    with ``strategy`` (default: the configured one); when conflicts remain, MERGED is left as
    it is and the resolution carries the three-way analysis. ``ModelDiffError`` for input that
    cannot be merged tensor by tensor."""
    from model_diff.merge import merge_checkpoints

    here = os.fspath(cwd) if cwd is not None else os.getcwd()
    chosen = strategy if strategy is not None else configured_strategy(here)
    res = Resolution(merged, merged=False)
    with contextlib.ExitStack() as stack:
        b = None if _no_base(base) else stack.enter_context(_open(base, merged, "base"))
        o = stack.enter_context(_open(local, merged, "ours"))
        t = stack.enter_context(_open(remote, merged, "theirs"))
        target = os.path.join(here, merged)
        result = merge_checkpoints(b, o, t, target, chosen)
        res.result = result
        if result.written:
            res.merged = True
            res.lines.append(_outcome_line(result, merged, ""))
            return res
        res.lines += _conflict_lines(result, merged)
        res.threeway = _analyse(b, o, t)
    return res


def main(argv: Sequence[str]) -> int:
    """The driver's entry point: 0 merged, 1 conflict (whatever went wrong, with a line
    saying what on stderr: a merge driver must never crash git)."""
    try:
        if len(argv) != 4:
            raise ModelDiffError(
                f"the merge driver takes 4 arguments (%O %A %B %P), got {len(argv)}",
                hint="register it with `model-diff install`",
            )
        res = merge_file(*argv)
        lines = res.lines
        code = 0 if res.merged else 1
    except ModelDiffError as e:
        path = argv[3] if len(argv) == 4 else "?"
        lines = [
            f"model-diff: cannot merge {printable(path)} tensor by tensor: {printable(str(e))}",
            "model-diff: ours kept; resolve by hand (git checkout --ours/--theirs, or "
            "model-diff merge on the three versions)",
        ]
        code = 1
    except Exception as e:  # a bug must not look like a crash to git: a conflict, explained
        lines = [
            f"model-diff: internal error in the merge driver {__version__} (a bug, please "
            f"report it): {printable(f'{type(e).__name__}: {e}')}; ours kept, file left "
            "conflicted"
        ]
        code = 1
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except OSError:
        pass
    return code
