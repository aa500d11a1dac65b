"""What ``model-diff ci --base REF --head REF`` compares: every checkpoint changed between them.

The two revisions are compared as given (``git diff BASE HEAD``, renames followed): pass the
pull request's base commit, which is what GitHub's "Files changed" tab shows for the head's
merge commit. A modified or renamed checkpoint is diffed against its base version; an added
one gets the single-file checks; a deleted one is listed, not judged. Both sides are read from
the revisions (LFS objects from the local store), not from the working tree.
This module decides targets; it does not read checkpoints, print or exit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import gitrepo
from .gate import Target
from .staged import CHECKPOINT_GLOBS, is_checkpoint, revision_opener, worktree_opener


@dataclass(frozen=True)
class Plan:
    """The targets of a CI run plus the checkpoints it deleted (reported, not judged)."""

    base: str
    head: str
    targets: list[Target]
    deleted: list[str]


def ci_plan(
    base: str,
    head: str | None,
    paths: Sequence[str] = (),
    *,
    cwd: str | os.PathLike[str] = ".",
) -> Plan:
    """Targets for every checkpoint matching ``paths`` globs changed from ``base`` to ``head``.

    ``head`` None compares ``base`` with the working tree.
    """
    top = gitrepo.top_level(Path(cwd))
    base_sha = gitrepo.require_commit(top, base)
    head_sha = gitrepo.require_commit(top, head) if head is not None else None
    globs = tuple(paths) or CHECKPOINT_GLOBS
    targets: list[Target] = []
    deleted: list[str] = []

    def wanted(path: str) -> bool:
        return is_checkpoint(path, globs)

    for c in gitrepo.pair_moves(gitrepo.changes(top, base_sha, head_sha), wanted):
        if c.status == "D":
            if c.old_path and is_checkpoint(c.old_path, globs):
                deleted.append(c.old_path)
            continue
        if c.new_path is None or not is_checkpoint(c.new_path, globs):
            continue
        new_label = f"{head}:{c.new_path}" if head is not None else c.new_path
        new = (
            revision_opener(top, head_sha, c.new_path, new_label)
            if head_sha is not None
            else worktree_opener(top, c.new_path)
        )
        if c.status == "A" or c.old_path is None:
            targets.append(Target(path=c.new_path, new=new, new_label=new_label))
            continue
        old_label = f"{base}:{c.old_path}"
        targets.append(
            Target(
                path=c.new_path,
                new=new,
                new_label=new_label,
                old=revision_opener(top, base_sha, c.old_path, old_label),
                old_label=old_label,
                old_path=c.old_path if c.old_path != c.new_path else None,
            )
        )
    return Plan(base=base, head=head or "worktree", targets=targets, deleted=sorted(deleted))
