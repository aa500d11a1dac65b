"""Helpers for tests that drive real git + git-lfs: a scrubbed env that module-scoped
fixtures can build (the conftest ``clean_env`` fixture is per test), and small git wrappers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from model_diff.toy import save_safetensors, toy_transformer


def git(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    check: bool = True,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def init_lfs_repo(
    repo: Path, env: dict[str, str], patterns: tuple[str, ...] = ("*.safetensors",)
) -> None:
    repo.mkdir(parents=True)
    git(["init", "-q", "-b", "main"], repo, env)
    git(["lfs", "install", "--local"], repo, env)
    for pat in patterns:
        git(["lfs", "track", pat], repo, env)


def small_model(seed: int = 0) -> dict[str, np.ndarray]:
    return toy_transformer(n_blocks=2, d_model=16, vocab=32, seed=seed)


def write_model(path: Path, sd: dict[str, np.ndarray]) -> None:
    save_safetensors(path, sd)


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """(removed, added) content lines of a unified diff, headers excluded."""
    minus = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return minus, plus


def tensor_names(lines: list[str]) -> set[str]:
    """Tensor names of textconv tensor lines (header lines skipped)."""
    return {
        ln.split(" ", 1)[0]
        for ln in lines
        if ln and not ln.startswith(("model-diff textconv", "checkpoint ", "skipped "))
    }
