"""Fixtures for the hook tests: toy checkpoints and real git (and git-lfs) repos in tmp_path."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from model_diff import toy


def git(repo: Path, *args: str, env: Mapping[str, str], check: bool = True) -> str:
    p = subprocess.run(
        ["git", *args], cwd=repo, env=dict(env), capture_output=True, text=True, check=False
    )
    if check and p.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {p.stderr}")
    return p.stdout


def base_state() -> dict[str, np.ndarray]:
    """A small LLaMA-style state dict (fixed seed)."""
    return toy.toy_transformer(n_blocks=2, d_model=16, vocab=32)


def healthy_step(state: Mapping[str, np.ndarray], seed: int = 1) -> dict[str, np.ndarray]:
    """A full fine-tune step: every tensor moves a little."""
    return toy.fine_tune(state, seed=seed, frozen=())


def frozen_step(
    state: Mapping[str, np.ndarray], prefix: str, seed: int = 1
) -> dict[str, np.ndarray]:
    """A step where every tensor under ``prefix`` stayed bit-identical."""
    return toy.fine_tune(state, seed=seed, frozen=lambda n: n.startswith(prefix))


def nan_step(state: Mapping[str, np.ndarray], seed: int = 1) -> dict[str, np.ndarray]:
    """A healthy step, except that one MLP weight gained NaNs."""
    out = healthy_step(state, seed)
    out["model.layers.0.mlp.up_proj.weight"][0, :3] = np.nan
    return out


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``clean_env`` for module-scoped fixtures (repos built once per test module)."""
    from tests.conftest import scrubbed_env

    return scrubbed_env(tmp_path_factory.mktemp("home"))


def init_repo(repo: Path, env: Mapping[str, str], lfs: bool = False) -> Path:
    """``git init`` (branch main) in ``repo``; with ``lfs``, track *.safetensors in Git LFS."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main", env=env)
    if lfs:
        git(repo, "lfs", "install", "--local", env=env)
        git(repo, "lfs", "track", "*.safetensors", env=env)
        git(repo, "add", ".gitattributes", env=env)
        git(repo, "commit", "-qm", "lfs", env=env)
    return repo


@pytest.fixture
def repo_factory(tmp_path: Path, clean_env: dict[str, str]) -> Callable[..., Path]:
    """``make(name, lfs=False)``: a fresh git repo (LFS tracking *.safetensors when asked)."""

    def make(name: str = "repo", lfs: bool = False) -> Path:
        return init_repo(tmp_path / name, clean_env, lfs)

    return make
