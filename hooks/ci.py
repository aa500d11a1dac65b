"""What ``model-diff ci --base REF --head REF`` compares: every checkpoint changed between them.

The two revisions are compared as given (``git diff BASE HEAD``, renames followed, model
folders as units, replaced checkpoints paired: ``git.Repo.changes``): pass the pull
request's base commit, which is what GitHub's "Files changed" tab shows for the head's merge
commit. A modified or renamed checkpoint is diffed against its base version; an added one
gets the single-file checks; a deleted one is listed, not judged. Both sides are read from
the revisions (LFS objects from the local store), not from the working tree.
This module decides targets; it does not read checkpoints, print or exit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from model_diff.gitdriver.git import WORKTREE, Repo, display_path

from .gate import Target
from .staged import change_targets, is_checkpoint


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
    """Targets for every changed checkpoint (matching the ``paths`` globs when given) from
    ``base`` to ``head``; ``head`` None compares ``base`` with the working tree."""
    repo = Repo.discover(cwd)
    base_id = repo.resolve(base)
    head_id = repo.resolve(head) if head is not None else WORKTREE
    changes = repo.changes(base_id, head_id)
    if paths:
        globs = tuple(paths)
        changes = [
            c
            for c in changes
            if any(is_checkpoint(p, globs) for p in (c.old_path, c.new_path, *c.parts) if p)
        ]
    targets = change_targets(repo, changes, old=base_id, old_name=base, new=head_id, new_name=head)
    deleted = [display_path(c.path) for c in changes if c.status == "removed"]
    return Plan(base=base, head=head or "worktree", targets=targets, deleted=sorted(deleted))
