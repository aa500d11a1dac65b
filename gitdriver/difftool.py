"""``git difftool -t model-diff`` and ``model-diff diff``: full paired reports of checkpoint files.

A ``Pair`` is one file as two sides (either may be absent: an added or deleted file). Pairs
come from difftool's arguments (two files, ``/dev/null`` for a missing side, or two folders
with ``--dir-diff``) or from a revision diff (``gitdriver.git.Change``). Each present
pair is diffed and analysed by the engine and rendered in the chosen report format; several
pairs are put together into one document of that format.

This module must not print or exit (``model_diff.cli`` does) and never runs ``git`` itself.
"""

from __future__ import annotations

import os
import tempfile
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_diff.checkpoint import Checkpoint
from model_diff.errors import ModelDiffError, UnknownFormatError
from model_diff.formats import is_checkpoint_name
from model_diff.naming import natural_sorted

from .extdiff import describe, facts, open_side
from .git import Change, DiffSides, Repo, display_path, pair_replaced
from .spec import open_spec

if TYPE_CHECKING:
    from model_diff.analysis import AnalysisConfig

#: What git passes for a missing side on POSIX (Windows git passes it literally too).
DEV_NULL = "/dev/null"


@dataclass(frozen=True)
class Pair:
    """One file to report: a label, the two sides to open (None = absent) and their names.

    ``old``/``new`` are filesystem paths (``is_spec`` False) or ``REV:path`` specs.
    """

    label: str
    old: str | None
    new: str | None
    old_name: str = ""
    new_name: str = ""
    status: str = "modified"
    old_path: str | None = None
    new_path: str | None = None
    similarity: int | None = None
    is_spec: bool = False


@dataclass
class PairResult:
    """What a pair produced: a rendered report, a one-side description, or an error."""

    pair: Pair
    report: str | None = None
    old_info: dict[str, Any] | None = None
    new_info: dict[str, Any] | None = None
    error: str | None = None
    skipped: bool = False


# -- where pairs come from -------------------------------------------------------------------


def difftool_pairs(local: str, remote: str, merged: str | None) -> list[Pair]:
    """Pairs for difftool's ``$LOCAL $REMOTE [$MERGED]``: two files, or two --dir-diff folders."""
    if os.path.isdir(local) and os.path.isdir(remote):
        return dir_pairs(local, remote)
    label = merged or _common_label(local, remote)
    old = None if local == DEV_NULL else local
    new = None if remote == DEV_NULL else remote
    status = "added" if old is None else "removed" if new is None else "modified"
    return [
        Pair(
            label,
            old,
            new,
            f"a/{label}",
            f"b/{label}",
            status,
            label if old else None,
            label if new else None,
        )
    ]


def dir_pairs(left: str, right: str) -> list[Pair]:
    """Checkpoint files of two folders paired by relative path (a file on one side only is
    an add or a delete, then ``git.pair_replaced``'s rule), in natural order. Other files are
    not checkpoints and are left out."""
    lfiles, rfiles = _walk(left), _walk(right)
    listed: list[Change] = []
    for rel in natural_sorted(set(lfiles) | set(rfiles)):
        if not is_checkpoint_name(rel):
            continue
        old, new = lfiles.get(rel), rfiles.get(rel)
        if old is None:
            listed.append(Change("added", None, rel))
        elif new is None:
            listed.append(Change("removed", rel, None))
        else:
            listed.append(Change("modified", rel, rel))
    pairs = []
    for c in pair_replaced(listed):
        old_side = lfiles[c.old_path] if c.old_path else None
        new_side = rfiles[c.new_path] if c.new_path else None
        label = display_path(c.path)
        old_name = f"a/{display_path(c.old_path or c.path)}"
        new_name = f"b/{display_path(c.path)}"
        old_shown = display_path(c.old_path) if c.old_path else None
        new_shown = display_path(c.new_path) if c.new_path else None
        pairs.append(
            Pair(label, old_side, new_side, old_name, new_name, c.status, old_shown, new_shown)
        )
    return pairs


def change_pairs(repo: Repo, sides: DiffSides, changes: Sequence[Change]) -> list[Pair]:
    """Pairs for a revision diff: ``REV:path`` specs, or on-disk paths for the working tree."""
    pairs = []
    for ch in changes:
        old = f"{sides.old_id}:{ch.old_path}" if ch.old_path else None
        old_name = f"{sides.old}:{display_path(ch.old_path)}" if ch.old_path else ""
        if ch.new_path is None:
            new, new_name = None, ""
        elif sides.new_id is None:
            new = os.path.join(repo.top, *ch.new_path.split("/"))
            new_name = display_path(ch.new_path)
        else:
            new = f"{sides.new_id}:{ch.new_path}"
            new_name = f"{sides.new}:{display_path(ch.new_path)}"
        pairs.append(
            Pair(
                display_path(ch.path),
                old,
                new,
                old_name,
                new_name,
                ch.status,
                display_path(ch.old_path) if ch.old_path else None,
                display_path(ch.new_path) if ch.new_path else None,
                ch.similarity,
                is_spec=True,
            )
        )
    return pairs


def _walk(root: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root).replace(os.sep, "/")] = full
    return out


def _common_label(local: str, remote: str) -> str:
    present = remote if remote != DEV_NULL else local
    return os.path.basename(present)


# -- running the engine ----------------------------------------------------------------------


def diff_revisions(
    revisions: Sequence[str],
    pathspecs: Sequence[str],
    fmt: str,
    *,
    color: bool = False,
    analysis_config: AnalysisConfig | None = None,
    cwd: str | None = None,
) -> tuple[str, list[PairResult]]:
    """``model-diff diff REV1 [REV2] [-- PATHSPEC...]``: every changed checkpoint between two
    revisions (REV2 default: the working tree), paired and reported as one document.

    Returns the document and the per-file results (the caller reports unreadable ones)."""
    repo = Repo.discover(cwd)
    sides = repo.diff_sides(revisions, pathspecs)
    changes = repo.changes(sides.old_id, sides.new_id, sides.pathspecs)
    meta = {
        "base": sides.old,
        "base_commit": sides.old_id,
        "head": sides.new,
        "head_commit": sides.new_id,
    }
    results = run_pairs(
        change_pairs(repo, sides, changes),
        fmt,
        repo_root=repo.top,
        color=color,
        analysis_config=analysis_config,
    )
    return render_results(results, fmt, title=sides.title, meta=meta), results


def run_pairs(
    pairs: Sequence[Pair],
    fmt: str,
    *,
    repo_root: str | None = None,
    color: bool = False,
    analysis_config: AnalysisConfig | None = None,
) -> list[PairResult]:
    """Diff and analyse every pair; an unreadable pair becomes an error result, not a stop."""
    return [
        run_pair(p, fmt, repo_root=repo_root, color=color, analysis_config=analysis_config)
        for p in pairs
    ]


def run_pair(
    pair: Pair,
    fmt: str,
    *,
    repo_root: str | None = None,
    color: bool = False,
    analysis_config: AnalysisConfig | None = None,
) -> PairResult:
    result = PairResult(pair)
    try:
        if pair.old is not None and pair.new is not None:
            if pair.status == "renamed" and pair.similarity == 100:
                return result  # identical content: nothing to diff
            old = _open(pair, pair.old, pair.old_name, repo_root)
            try:
                new = _open(pair, pair.new, pair.new_name, repo_root)
                try:
                    result.report = compare_checkpoints(
                        old, new, fmt, pair, color=color, analysis_config=analysis_config
                    )
                    result.old_info, result.new_info = describe(old), describe(new)
                finally:
                    new.close()
            finally:
                old.close()
        else:
            side = pair.old if pair.old is not None else pair.new
            if side is None:
                raise ModelDiffError(f"{pair.label}: both sides are missing")
            ckpt = _open(
                pair, side, pair.old_name if side == pair.old else pair.new_name, repo_root
            )
            with ckpt:
                info = describe(ckpt)
            if pair.old is None:
                result.new_info = info
            else:
                result.old_info = info
    except UnknownFormatError as exc:
        result.skipped = True
        result.error = str(exc)
    except ModelDiffError as exc:
        result.error = str(exc)
    return result


def _open(pair: Pair, side: str, name: str, repo_root: str | None) -> Checkpoint:
    if pair.is_spec:
        return open_spec(side, cwd=repo_root, display=name or None)
    if os.path.isdir(side):
        from model_diff.formats import open_checkpoint

        return open_checkpoint(side)
    # git's temporary copies are named by the path they stand for, never by where they lie
    return open_side(side, name or os.path.basename(side), repo_root)


def compare_checkpoints(
    old: Checkpoint,
    new: Checkpoint,
    fmt: str,
    pair: Pair,
    *,
    color: bool = False,
    analysis_config: AnalysisConfig | None = None,
) -> str:
    """The engine's full report (metrics + analysis + insights) for one pair."""
    from model_diff.pipeline import compare

    result = compare(
        old,
        new,
        old_label=pair.old_name,
        new_label=pair.new_name,
        analysis_config=analysis_config,
    )
    return result.report(fmt, old_name=pair.old_name, new_name=pair.new_name, color=color)


# -- putting reports together ----------------------------------------------------------------


def status_line(r: PairResult) -> str:
    """One line saying what happened to the file: ``added: 19 tensors, 12,345 parameters``."""
    p = r.pair
    if p.status == "renamed" and p.similarity is None:
        return f"renamed from {p.old_path} (a replaced checkpoint, paired by name)"
    if p.status == "renamed":
        head = f"renamed from {p.old_path} (similarity {p.similarity}%)"
        return head + (": content identical" if p.similarity == 100 else "")
    if r.skipped:
        return "skipped: not a checkpoint format model-diff reads"
    if r.error is not None:
        return "error: " + r.error
    info = r.new_info if p.status == "added" else r.old_info
    if p.status in ("added", "removed") and info is not None:
        return f"{p.status}: {facts(info)}"
    return p.status


def render_results(
    results: Sequence[PairResult],
    fmt: str,
    *,
    title: str,
    meta: dict[str, Any] | None = None,
    unwrap_single: bool = False,
) -> str:
    """One document in ``fmt`` for all results (``model_diff.report.document``).

    With ``unwrap_single``, a single modified pair's HTML or JSON is the engine's report
    itself (difftool on one file), not a one-entry list.
    """
    if (
        unwrap_single
        and len(results) == 1
        and results[0].report is not None
        and fmt in ("html", "json")
    ):
        return results[0].report
    if fmt != "text" and not title:
        title = results[0].pair.label if results else "model-diff"
    from model_diff.report.document import Entry, render_document

    entries = [
        Entry(
            label=r.pair.label,
            status=status_line(r),
            report=r.report,
            record={
                "path": r.pair.label,
                "status": r.pair.status,
                "old_path": r.pair.old_path,
                "new_path": r.pair.new_path,
                "similarity": r.pair.similarity,
                "old": r.old_info,
                "new": r.new_info,
                "error": r.error,
                "skipped": r.skipped,
            },
        )
        for r in results
    ]
    return render_document(entries, fmt, title=title, meta=meta)


# -- HTML in a browser -----------------------------------------------------------------------


def write_temp_html(text: str) -> str:
    """Write an HTML report to a new temporary file, kept afterwards for the browser to read."""
    fd, path = tempfile.mkstemp(prefix="model-diff-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return path


def open_in_browser(path: str) -> bool:
    """Open ``path`` with ``webbrowser`` (which honours ``$BROWSER``); False when none ran."""
    try:
        return webbrowser.open(Path(path).resolve().as_uri())
    except webbrowser.Error:
        return False
