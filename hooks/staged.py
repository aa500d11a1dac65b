"""What ``model-diff check --staged`` compares: each staged checkpoint against its base.

While pre-commit runs, the working tree holds exactly the staged content (pre-commit stashes
unstaged changes first), so the new side is the working-tree file. The base is ``HEAD:path``,
following renames staged in the index (``git diff --cached -M``). Under
``pre-commit run --from-ref A --to-ref B`` and the pre-push stage, pre-commit sets
``PRE_COMMIT_FROM_REF`` / ``PRE_COMMIT_TO_REF``: the base is then
``merge-base(A, B):path`` (renames followed between the merge base and B). A path without a
base (initial commit, file new in this commit) gets the single-file checks only.
This module decides targets; it does not read checkpoints, print or exit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from model_diff.gitdriver import revisions

from model_diff.checkpoint import Checkpoint

from . import gitrepo
from .gate import Opener, Target

#: Extensions the hooks look at when no paths are given (same as .pre-commit-hooks.yaml).
CHECKPOINT_GLOBS = ("*.safetensors", "*.pt", "*.pth", "*.bin", "*.ckpt", "*.npz", "*.npy")


def is_checkpoint(path: str, globs: Sequence[str] = CHECKPOINT_GLOBS) -> bool:
    return any(fnmatchcase(path, g) or fnmatchcase(Path(path).name, g) for g in globs)


def worktree_opener(top: Path, path: str, label: str | None = None) -> Opener:
    """``path`` (top-level relative) on disk; an LFS pointer resolved from the local store."""

    def open_() -> Checkpoint:
        with revisions.open_repo(top) as repo:
            return revisions.open_revision(repo, None, path, display=label or path)

    return open_


def revision_opener(top: Path, rev: str, path: str, label: str) -> Opener:
    """``rev:path`` from git history (LFS objects from the store), named ``label``."""

    def open_() -> Checkpoint:
        with revisions.open_repo(top) as repo:
            return revisions.open_revision(repo, rev, path, display=label)

    return open_


def repo_relative(top: Path, path: str, cwd: Path) -> str | None:
    """``path`` (relative to ``cwd`` or absolute) relative to ``top``; None if outside it."""
    # Resolve the parent only: the file itself may be a symlink we must not follow.
    p = (cwd / path).parent.resolve() / Path(path).name
    try:
        return p.relative_to(top.resolve()).as_posix()
    except ValueError:
        return None


def staged_targets(
    paths: Sequence[str],
    *,
    cwd: str | os.PathLike[str] = ".",
    environ: Mapping[str, str] | None = None,
) -> list[Target]:
    """The targets of ``check --staged [PATHS]`` (all staged checkpoints when no paths)."""
    env = os.environ if environ is None else environ
    cwd_p = Path(cwd).resolve()
    top = gitrepo.top_level(cwd_p)
    from_ref = env.get("PRE_COMMIT_FROM_REF") or env.get("PRE_COMMIT_ORIGIN")
    to_ref = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_SOURCE")
    base: str | None
    if from_ref and to_ref:
        mb = gitrepo.merge_base(top, from_ref, to_ref)
        base = mb
        listed = gitrepo.pair_moves(
            gitrepo.changes(top, mb, gitrepo.require_commit(top, to_ref)), is_checkpoint
        )
        base_label = "merge-base"
    else:
        base = gitrepo.resolve(top, "HEAD")
        listed = (
            gitrepo.pair_moves(gitrepo.changes(top, base, cached=True), is_checkpoint)
            if base
            else []
        )
        base_label = "HEAD"
    renamed_from = {c.new_path: c.old_path for c in listed if c.status in "RC" and c.new_path}

    if paths:
        rels = [repo_relative(top, p, cwd_p) or Path(p).as_posix() for p in paths]
    elif base is None:  # initial commit: everything in the index is new
        rels = [
            p
            for p in gitrepo.git(["ls-files", "-z", "--cached"], top).split("\0")
            if p and is_checkpoint(p)
        ]
    else:
        rels = [
            c.new_path
            for c in listed
            if c.new_path and c.status != "D" and is_checkpoint(c.new_path)
        ]

    targets = []
    for rel in rels:
        old_path = renamed_from.get(rel) or rel
        if base is not None and gitrepo.exists_at(top, base, old_path):
            old_label = f"{base_label}:{old_path}"
            targets.append(
                Target(
                    path=rel,
                    new=worktree_opener(top, rel),
                    new_label=rel,
                    old=revision_opener(top, base, old_path, old_label),
                    old_label=old_label,
                    old_path=old_path if old_path != rel else None,
                )
            )
        else:
            targets.append(Target(path=rel, new=worktree_opener(top, rel), new_label=rel))
    return targets
