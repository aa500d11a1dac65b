"""The git questions the hooks ask: top level, revisions, merge base, changed paths.

Runs real ``git`` with argument lists (no shell; diff drivers and textconv off), so the index,
``diff.renames`` and rename detection are git's own. Opening checkpoints at a revision (Git
LFS objects from the local store) is ``gitdriver.revisions``' job, not this module's.
Errors are ``GitError`` naming the repository and the fix. Never prints, never exits.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model_diff.errors import GitError


@dataclass(frozen=True)
class Change:
    """One changed path between two trees: status letter A/M/R/D/C/T, old and new path."""

    status: str
    old_path: str | None
    new_path: str | None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GIT_EXTERNAL_DIFF", None)
    return env


def git(args: list[str], cwd: str | os.PathLike[str], *, check: bool = True) -> str:
    """Run ``git ARGS`` in ``cwd`` and return stdout (``GitError`` with git's message)."""
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, env=_env(), check=False)
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    if check and p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else p.returncode}")
    return p.stdout.decode("utf-8", errors="surrogateescape")


def top_level(cwd: str | os.PathLike[str] = ".") -> Path:
    """The work tree's top level (``GitError`` outside a repository)."""
    p = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=cwd,
        capture_output=True,
        env=_env(),
        check=False,
    )
    if p.returncode != 0:
        raise GitError(
            "not inside a git work tree",
            path=os.fspath(cwd),
            hint="run inside a git repository, or use: model-diff check OLD NEW",
        )
    return Path(p.stdout.decode("utf-8", errors="surrogateescape").rstrip("\n"))


def try_top_level(cwd: str | os.PathLike[str] = ".") -> Path | None:
    try:
        return top_level(cwd)
    except GitError:
        return None


def resolve(top: Path, rev: str) -> str | None:
    """The commit id of ``rev``, or None when it does not name a commit here."""
    p = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=top,
        capture_output=True,
        env=_env(),
        check=False,
    )
    return p.stdout.decode().strip() if p.returncode == 0 else None


def require_commit(top: Path, rev: str) -> str:
    sha = resolve(top, rev)
    if sha is None:
        raise GitError(
            f"unknown revision {rev!r}",
            path=str(top),
            hint=f"fetch it first: git fetch --no-tags --depth=1 origin {rev}",
        )
    return sha


def merge_base(top: Path, a: str, b: str) -> str:
    out = git(["merge-base", require_commit(top, a), require_commit(top, b)], top, check=False)
    if not out.strip():
        raise GitError(
            f"no merge base between {a!r} and {b!r}",
            path=str(top),
            hint="fetch more history (fetch-depth: 0) or pass the base commit itself",
        )
    return out.split()[0]


def _parse_name_status(out: str) -> list[Change]:
    fields = out.split("\0")
    changes = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i]
        letter = status[0]
        if letter in "RC":
            changes.append(Change(letter, fields[i + 1], fields[i + 2]))
            i += 3
        else:
            path = fields[i + 1]
            changes.append(
                Change(letter, None if letter == "A" else path, None if letter == "D" else path)
            )
            i += 2
    return changes


def pair_moves(listed: list[Change], is_candidate: Callable[[str], bool]) -> list[Change]:
    """Turn a delete + add of checkpoints in one directory into a rename.

    git's rename detection compares content, so it rarely recognises a retrained checkpoint
    saved under a new name (``step_1000`` -> ``step_2000``) and never an LFS pointer whose
    object changed. When, in one directory, exactly one checkpoint with a given extension was
    deleted and exactly one with that extension added, they are paired as a rename (``R``).
    """

    def key(path: str) -> tuple[str, str]:
        return posixpath.dirname(path), posixpath.splitext(path)[1]

    deleted: dict[tuple[str, str], list[Change]] = {}
    added: dict[tuple[str, str], list[Change]] = {}
    for c in listed:
        if c.status == "D" and c.old_path and is_candidate(c.old_path):
            deleted.setdefault(key(c.old_path), []).append(c)
        elif c.status == "A" and c.new_path and is_candidate(c.new_path):
            added.setdefault(key(c.new_path), []).append(c)
    paired: dict[int, Change] = {}
    drop: set[int] = set()
    for k, dels in deleted.items():
        adds = added.get(k, [])
        if len(dels) == 1 and len(adds) == 1:
            paired[id(adds[0])] = Change("R", dels[0].old_path, adds[0].new_path)
            drop.add(id(dels[0]))
    return [paired.get(id(c), c) for c in listed if id(c) not in drop]


def changes(top: Path, base: str, head: str | None = None, *, cached: bool = False) -> list[Change]:
    """Paths changed from ``base`` to ``head`` (a commit), the index (``cached``) or the worktree.

    Renames are followed (``-M``); the diff drivers and textconv are off.
    """
    # -M explicitly: rename detection on whatever diff.renames says.
    args = ["diff", "--no-ext-diff", "--no-textconv", "-M", "--name-status", "-z"]
    if cached:
        args.append("--cached")
    args.append(base)
    if head is not None:
        args.append(head)
    args.append("--")
    return _parse_name_status(git(args, top))


def exists_at(top: Path, rev: str, path: str) -> bool:
    """Whether ``path`` is a file in ``rev``'s tree."""
    p = subprocess.run(
        ["git", "cat-file", "-e", f"{rev}:{path}"],
        cwd=top,
        capture_output=True,
        env=_env(),
        check=False,
    )
    return p.returncode == 0
