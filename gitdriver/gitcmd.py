"""Running ``git`` and finding repository directories: the small plumbing the drivers share.

Two kinds of helpers live here:

- ``find_git_dirs`` walks up from a directory to the repository's git dir and *common* dir
  with plain file reads (no subprocess, no dulwich): the textconv driver runs once per file per
  commit and uses it to locate its cache, so it must cost microseconds.
- ``git`` / ``git_config_*`` run the real ``git`` executable with argument lists (no shell) for
  install, uninstall and status, which must edit config exactly the way git itself does.

This module must not import click, dulwich or the engine's heavy modules.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from model_diff.errors import GitError


@dataclass(frozen=True)
class GitDirs:
    """Where a repository lives: its git dir (per worktree) and common dir (shared)."""

    git_dir: Path
    common_dir: Path


def _read_gitfile(dotgit: Path) -> Path | None:
    """The target of a ``.git`` file (``gitdir: ...``), as linked worktrees and submodules use."""
    try:
        text = dotgit.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    first = text.splitlines()[0] if text else ""
    if not first.startswith("gitdir:"):
        return None
    target = Path(first[len("gitdir:"):].strip())
    return target if target.is_absolute() else (dotgit.parent / target)


def _common_of(git_dir: Path) -> Path:
    commondir = git_dir / "commondir"
    try:
        rel = commondir.read_text(encoding="utf-8").strip()
    except OSError:
        return git_dir
    target = Path(rel)
    return (target if target.is_absolute() else git_dir / target).resolve()


def find_git_dirs(start: str | os.PathLike[str] | None = None) -> GitDirs | None:
    """The git and common dirs of the repository containing ``start`` (default: cwd), or None.

    Honours ``GIT_DIR`` / ``GIT_COMMON_DIR`` when set (git sets neither for textconv; hooks
    and users may).
    """
    env_dir = os.environ.get("GIT_DIR")
    if env_dir:
        git_dir = Path(env_dir).resolve()
        env_common = os.environ.get("GIT_COMMON_DIR")
        common = Path(env_common).resolve() if env_common else _common_of(git_dir)
        return GitDirs(git_dir, common)
    here = Path(start if start is not None else os.getcwd()).resolve()
    for d in (here, *here.parents):
        dotgit = d / ".git"
        if dotgit.is_dir():
            git_dir = dotgit
        elif dotgit.is_file():
            target = _read_gitfile(dotgit)
            if target is None:
                continue
            git_dir = target
        elif (d / "HEAD").is_file() and (d / "objects").is_dir() and (d / "refs").is_dir():
            git_dir = d  # a bare repository (or we are inside .git itself)
        else:
            continue
        git_dir = git_dir.resolve()
        return GitDirs(git_dir, _common_of(git_dir))
    return None


def git(
    args: list[str], *, cwd: str | os.PathLike[str] | None = None, check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` (text mode, output captured); GitError naming the command on failure."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
        )
    except FileNotFoundError as e:
        raise GitError("git is not installed or not on PATH",
                       hint="install git and try again") from e
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise GitError(
            f"`git {' '.join(args)}` failed (exit {proc.returncode})"
            + (f": {detail[-1]}" if detail else "")
        )
    return proc


def toplevel(cwd: str | os.PathLike[str] | None = None) -> Path | None:
    """The working tree's top level, or None outside a repository (or in a bare one)."""
    proc = git(["rev-parse", "--show-toplevel"], cwd=cwd, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return Path(proc.stdout.strip())


def config_get(scope_args: list[str], key: str,
               cwd: str | os.PathLike[str] | None = None) -> str | None:
    """One config value in a scope (``["--local"]``, ``["--global"]``, ``[]`` = effective)."""
    proc = git(["config", *scope_args, "--get", key], cwd=cwd, check=False)
    if proc.returncode == 1:
        return None
    if proc.returncode != 0:
        raise GitError(f"`git config {' '.join(scope_args)} --get {key}` failed: "
                       f"{proc.stderr.strip()}")
    return proc.stdout[:-1] if proc.stdout.endswith("\n") else proc.stdout


def config_keys(scope_args: list[str], prefix_regex: str,
                cwd: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Keys matching a regex in a scope, with their (last) values."""
    proc = git(["config", *scope_args, "-z", "--get-regexp", prefix_regex], cwd=cwd,
               check=False)
    if proc.returncode == 1:
        return {}
    if proc.returncode != 0:
        raise GitError(f"`git config --get-regexp {prefix_regex}` failed: {proc.stderr.strip()}")
    out: dict[str, str] = {}
    for rec in proc.stdout.split("\0"):
        if not rec:
            continue
        key, _, value = rec.partition("\n")
        out[key] = value
    return out


def config_set(scope_args: list[str], key: str, value: str,
               cwd: str | os.PathLike[str] | None = None) -> None:
    git(["config", *scope_args, key, value], cwd=cwd)


def config_unset(scope_args: list[str], key: str,
                 cwd: str | os.PathLike[str] | None = None) -> None:
    proc = git(["config", *scope_args, "--unset-all", key], cwd=cwd, check=False)
    if proc.returncode not in (0, 5):  # 5: the key was not there
        raise GitError(f"`git config --unset-all {key}` failed: {proc.stderr.strip()}")


def config_remove_section(scope_args: list[str], section: str,
                          cwd: str | os.PathLike[str] | None = None) -> None:
    git(["config", *scope_args, "--remove-section", section], cwd=cwd, check=False)
