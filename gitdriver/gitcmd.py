"""Running the real ``git`` executable: the small plumbing install, uninstall and status share.

``git`` / ``config_*`` run git with argument lists (no shell), so config is edited exactly the
way git itself does it (comments and unrelated keys untouched). Not for the textconv path,
which must not pay for subprocesses.

This module must not import click, dulwich or the engine's heavy modules.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from model_diff.errors import GitError


def git(
    args: list[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` (text mode, output captured); GitError naming the command on failure."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise GitError(
            "git is not installed or not on PATH", hint="install git and try again"
        ) from e
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


def config_get(
    scope_args: list[str], key: str, cwd: str | os.PathLike[str] | None = None
) -> str | None:
    """One config value in a scope (``["--local"]``, ``["--global"]``, ``[]`` = effective)."""
    proc = git(["config", *scope_args, "--get", key], cwd=cwd, check=False)
    if proc.returncode == 1:
        return None
    if proc.returncode != 0:
        raise GitError(
            f"`git config {' '.join(scope_args)} --get {key}` failed: {proc.stderr.strip()}"
        )
    return proc.stdout[:-1] if proc.stdout.endswith("\n") else proc.stdout


def config_keys(
    scope_args: list[str], prefix_regex: str, cwd: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Keys matching a regex in a scope, with their (last) values."""
    proc = git(["config", *scope_args, "-z", "--get-regexp", prefix_regex], cwd=cwd, check=False)
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


def config_set(
    scope_args: list[str], key: str, value: str, cwd: str | os.PathLike[str] | None = None
) -> None:
    git(["config", *scope_args, key, value], cwd=cwd)


def config_unset(
    scope_args: list[str], key: str, cwd: str | os.PathLike[str] | None = None
) -> None:
    proc = git(["config", *scope_args, "--unset-all", key], cwd=cwd, check=False)
    if proc.returncode not in (0, 5):  # 5: the key was not there
        raise GitError(f"`git config --unset-all {key}` failed: {proc.stderr.strip()}")


def config_remove_section(
    scope_args: list[str], section: str, cwd: str | os.PathLike[str] | None = None
) -> None:
    git(["config", *scope_args, "--remove-section", section], cwd=cwd, check=False)
