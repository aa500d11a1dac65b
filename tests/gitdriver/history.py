"""A small real git history of checkpoints, with and without Git LFS, for the revision tests.

``build_history(root, env, lfs=...)`` makes three commits (HEAD~2, HEAD~1, HEAD):

- ``model.safetensors``: the toy model, fine-tuned in each later commit (modified);
- ``moved.safetensors`` -> ``ckpt/renamed.safetensors`` in HEAD~1 (an exact rename);
- ``old.safetensors``: removed in HEAD;
- ``new.safetensors``: added in HEAD;
- ``notes.txt``: changes too, and must never be listed as a checkpoint.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_diff.toy import fine_tune, save_safetensors, toy_transformer


def git(
    root: Path, env: Mapping[str, str], *args: str, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run real ``git`` in ``root`` with output captured as text."""
    proc: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        ["git", *args], cwd=root, env=dict(env), capture_output=True, text=True, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc


def init_repo(root: Path, env: Mapping[str, str], *, lfs: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    git(root, env, "init", "-q", "-b", "main")
    if lfs:
        git(root, env, "lfs", "install", "--local")
        git(root, env, "lfs", "track", "*.safetensors")
        git(root, env, "add", ".gitattributes")


@dataclass
class History:
    """Where the history lives and the weights each commit holds."""

    root: Path
    lfs: bool
    model: list[dict[str, np.ndarray]]  # model.safetensors at HEAD~2, HEAD~1, HEAD
    moved: dict[str, np.ndarray]
    old: dict[str, np.ndarray]
    new: dict[str, np.ndarray]


def toy(seed: int) -> dict[str, np.ndarray]:
    return toy_transformer(n_blocks=2, d_model=16, vocab=32, seed=seed)


def build_history(root: Path, env: Mapping[str, str], *, lfs: bool) -> History:
    init_repo(root, env, lfs=lfs)
    m0 = toy(0)
    m1 = fine_tune(m0, seed=1)
    m2 = fine_tune(m1, seed=2)
    moved, old, new = toy(10), toy(11), toy(12)
    save_safetensors(root / "model.safetensors", m0)
    save_safetensors(root / "moved.safetensors", moved)
    save_safetensors(root / "old.safetensors", old)
    (root / "notes.txt").write_text("v0\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "c0")
    save_safetensors(root / "model.safetensors", m1)
    (root / "ckpt").mkdir()
    git(root, env, "mv", "moved.safetensors", "ckpt/renamed.safetensors")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "c1")
    save_safetensors(root / "model.safetensors", m2)
    git(root, env, "rm", "-q", "old.safetensors")
    save_safetensors(root / "new.safetensors", new)
    (root / "notes.txt").write_text("v2\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "c2")
    return History(root, lfs, [m0, m1, m2], moved, old, new)
