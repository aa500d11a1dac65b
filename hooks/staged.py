"""Which checkpoints ``check --staged`` and ``ci`` compare: ``Change``s made ``Target``s.

``check --staged``: while pre-commit runs, the working tree holds exactly the staged content
(pre-commit stashes unstaged changes first), so the new side is the working tree and the
base is ``HEAD`` (the empty tree before the first commit), following what the index changed
(``git.Repo.changes(HEAD, INDEX)``: renames, model folders, replaced checkpoints). Under
``pre-commit run --from-ref A --to-ref B`` and the pre-push stage, pre-commit sets
``PRE_COMMIT_FROM_REF`` / ``PRE_COMMIT_TO_REF``: the base is then ``merge-base(A, B)`` and
the changes are those from there to B. A checkpoint without a base gets the single-file
checks only. This module decides targets; it does not read checkpoints, print or exit.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from model_diff.gitdriver.git import INDEX, WORKTREE, Change, Repo, Side, display_path

from model_diff.errors import GitError
from model_diff.formats import checkpoint_globs, is_checkpoint_name

from .gate import Opener, Target

#: The checkpoint files the hooks look at when no globs are given (from the readers).
CHECKPOINT_GLOBS = checkpoint_globs()


def is_checkpoint(path: str, globs: Sequence[str] | None = None) -> bool:
    """A checkpoint file by extension (any letter case), or one matching ``globs``."""
    if globs is None:
        return is_checkpoint_name(path)
    return any(fnmatchcase(path, g) or fnmatchcase(posixpath.basename(path), g) for g in globs)


def opener(repo: Repo, side: Side, path: str, label: str) -> Opener:
    """``path`` (top-level relative, a file or a model folder) at ``side``, named ``label``."""
    return lambda: repo.open(side, path, display=label)


def change_targets(
    repo: Repo,
    changes: Sequence[Change],
    *,
    old: str,
    old_name: str,
    new: Side,
    new_name: str | None,
) -> list[Target]:
    """A target per change that has a new side: against its old side when it has one."""
    targets = []
    for c in changes:
        if c.new_path is None:
            continue
        shown = display_path(c.new_path)
        new_label = f"{new_name}:{shown}" if new_name else shown
        target = Target(
            path=shown,
            new=opener(repo, new, c.new_path, new_label),
            new_label=new_label,
            change=c.status,
        )
        if c.old_path is not None:
            old_label = f"{old_name}:{display_path(c.old_path)}"
            target = Target(
                path=shown,
                new=target.new,
                new_label=new_label,
                old=opener(repo, old, c.old_path, old_label),
                old_label=old_label,
                old_path=display_path(c.old_path) if c.old_path != c.new_path else None,
                change=c.status,
            )
        targets.append(target)
    return targets


def _covers(c: Change, rel: str) -> bool:
    return rel in (c.old_path, c.new_path, *c.parts) or (
        c.folder and c.new_path is not None and rel.startswith(c.new_path + "/")
    )


def staged_targets(
    paths: Sequence[str],
    *,
    cwd: str | os.PathLike[str] = ".",
    environ: Mapping[str, str] | None = None,
) -> tuple[list[Target], list[str]]:
    """The targets of ``check --staged [PATHS]`` (every staged checkpoint when no paths), and
    the checkpoints the change deletes (none when paths are given: pre-commit never passes a
    deleted file)."""
    env = os.environ if environ is None else environ
    repo = Repo.discover(cwd)
    from_ref = env.get("PRE_COMMIT_FROM_REF") or env.get("PRE_COMMIT_ORIGIN")
    to_ref = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_SOURCE")
    if from_ref and to_ref:
        base = repo.merge_base(from_ref, to_ref)
        if base is None:
            raise GitError(
                f"no merge base between {from_ref!r} and {to_ref!r}",
                path=repo.top,
                hint="fetch more history (fetch-depth: 0) or pass the base commit itself",
            )
        listed = repo.changes(base, repo.resolve(to_ref))
        base_name = "merge-base"
    else:
        base = repo.try_resolve("HEAD") or repo.empty_tree()
        listed = repo.changes(base, INDEX)
        base_name = "HEAD"
    deleted = [display_path(c.path) for c in listed if c.status == "removed"]
    if paths:
        deleted = []
        rels = [repo.relative(p, cwd) or p.replace(os.sep, "/") for p in paths]
        chosen = [c for c in listed if any(_covers(c, r) for r in rels)]
        for rel in dict.fromkeys(rels):
            if any(_covers(c, rel) for c in chosen):
                continue
            # Not changed (``pre-commit run --all-files``): still compared with its base.
            unit = repo.folder_of(rel, WORKTREE) or rel
            in_base = bool(repo.exists(base, [rel]))  # unchanged: there iff it is here
            status = "modified" if in_base else "added"
            chosen.append(Change(status, unit if in_base else None, unit, folder=unit != rel))
        listed = [c for i, c in enumerate(chosen) if c not in chosen[:i]]
    targets = change_targets(
        repo, listed, old=base, old_name=base_name, new=WORKTREE, new_name=None
    )
    return targets, sorted(deleted)
