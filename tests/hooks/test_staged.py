"""`model-diff check --staged` in real git repos: HEAD base, renames, LFS store, pre-push refs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from model_diff import toy
from tests.conftest import run_model_diff

from .conftest import base_state, frozen_step, git, healthy_step, nan_step

FROZEN = "model.layers.1.mlp."


def commit_file(repo: Path, name: str, state: dict, env: dict[str, str], msg: str) -> None:
    toy.save_safetensors(repo / name, state)
    git(repo, "add", name, env=env)
    git(repo, "commit", "-qm", msg, env=env)


def test_staged_rename_is_compared_with_its_old_path(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """A rename git detects (one tensor edited) is diffed against HEAD:<old path>."""
    repo = repo_factory()
    a = base_state()
    commit_file(repo, "old.safetensors", a, clean_env, "base")
    git(repo, "mv", "old.safetensors", "new.safetensors", env=clean_env)
    b = {k: v.copy() for k, v in a.items()}
    b["lm_head.weight"] *= 1.01
    toy.save_safetensors(repo / "new.safetensors", b)
    git(repo, "add", "new.safetensors", env=clean_env)
    assert git(repo, "diff", "--cached", "-M", "--name-status", env=clean_env).startswith("R")
    r = run_model_diff(["check", "--staged"], clean_env, cwd=repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED     new.safetensors (HEAD:old.safetensors -> new.safetensors)" in r.stdout
    assert "frozen-layers: 20 tensor(s) exactly unchanged while 1 other(s) changed" in r.stdout


def test_retrained_checkpoint_under_a_new_name_is_paired(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """step_1 deleted + step_2 added in one directory (no git rename): diffed as a pair."""
    repo = repo_factory()
    a = base_state()
    (repo / "ckpt").mkdir()
    commit_file(repo, "ckpt/step_1.safetensors", a, clean_env, "base")
    git(repo, "rm", "-q", "ckpt/step_1.safetensors", env=clean_env)
    (repo / "ckpt").mkdir(exist_ok=True)  # git rm removed the emptied directory
    toy.save_safetensors(repo / "ckpt" / "step_2.safetensors", frozen_step(a, FROZEN))
    git(repo, "add", "ckpt/step_2.safetensors", env=clean_env)
    assert "R" not in git(repo, "diff", "--cached", "-M", "--name-status", env=clean_env)
    r = run_model_diff(["check", "--staged"], clean_env, cwd=repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "(HEAD:ckpt/step_1.safetensors -> ckpt/step_2.safetensors)" in r.stdout
    assert "frozen-layers: 3 tensor(s)" in r.stdout and FROZEN + "up_proj.weight" in r.stdout


def test_staged_healthy_step_passes_and_new_file_gets_health_checks(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """Healthy step -> exit 0; a new file is checked alone (NaN fails, exit 1)."""
    repo = repo_factory()
    a = base_state()
    commit_file(repo, "m.safetensors", a, clean_env, "base")
    toy.save_safetensors(repo / "m.safetensors", healthy_step(a))
    git(repo, "add", "m.safetensors", env=clean_env)
    r = run_model_diff(["check", "--staged", "m.safetensors"], clean_env, cwd=repo)
    assert (r.returncode, r.stderr) == (0, ""), r.stdout
    toy.save_safetensors(repo / "n.safetensors", nan_step(a))
    git(repo, "add", "n.safetensors", env=clean_env)
    r = run_model_diff(["check", "--staged"], clean_env, cwd=repo)
    assert r.returncode == 1
    assert "FAILED     n.safetensors (no base: single-file checks)" in r.stdout
    assert "ok         m.safetensors (HEAD:m.safetensors -> m.safetensors)" in r.stdout


def test_initial_commit_has_no_base(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """Without HEAD every staged checkpoint gets single-file checks."""
    repo = repo_factory()
    toy.save_safetensors(repo / "m.safetensors", base_state())
    git(repo, "add", "m.safetensors", env=clean_env)
    r = run_model_diff(["check", "--staged"], clean_env, cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok         m.safetensors (no base: single-file checks)" in r.stdout


def test_lfs_base_is_read_from_the_local_store(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """With Git LFS, HEAD:path is a pointer: the base comes from .git/lfs/objects."""
    repo = repo_factory(lfs=True)
    a = base_state()
    commit_file(repo, "m.safetensors", a, clean_env, "base")
    assert git(repo, "show", "HEAD:m.safetensors", env=clean_env).startswith("version https")
    toy.save_safetensors(repo / "m.safetensors", frozen_step(a, FROZEN))
    git(repo, "add", "m.safetensors", env=clean_env)
    r = run_model_diff(["check", "--staged", "m.safetensors"], clean_env, cwd=repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "frozen-layers" in r.stdout and "HEAD:m.safetensors -> m.safetensors" in r.stdout


def test_lfs_pointer_without_object_exits_2_naming_git_lfs(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """A worktree LFS pointer whose object is not local: exit 2 and 'git lfs pull' hint."""
    repo = repo_factory(lfs=True)
    commit_file(repo, "m.safetensors", base_state(), clean_env, "base")
    pointer = git(repo, "show", "HEAD:m.safetensors", env=clean_env)
    for obj in (repo / ".git" / "lfs" / "objects").rglob("*"):
        if obj.is_file():
            obj.unlink()
    (repo / "m.safetensors").write_text(pointer)
    r = run_model_diff(["check", "--staged", "m.safetensors"], clean_env, cwd=repo)
    assert r.returncode == 2
    assert "UNREADABLE m.safetensors" in r.stdout
    assert "Git LFS pointer" in r.stdout and "git lfs pull" in r.stdout


def test_pre_push_refs_compare_with_the_merge_base(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """PRE_COMMIT_FROM_REF/TO_REF: base is merge-base(FROM, TO):path, not HEAD."""
    repo = repo_factory()
    a = base_state()
    commit_file(repo, "m.safetensors", a, clean_env, "base")
    git(repo, "checkout", "-qb", "feature", env=clean_env)
    b = frozen_step(a, FROZEN)
    commit_file(repo, "m.safetensors", b, clean_env, "frozen")
    c = toy.fine_tune(b, seed=2, frozen=lambda n: n.startswith(FROZEN))
    commit_file(repo, "m.safetensors", c, clean_env, "still frozen")
    r = run_model_diff(["check", "--staged", "m.safetensors"], clean_env, cwd=repo)
    assert r.returncode == 0, r.stdout  # HEAD == worktree: nothing changed since HEAD
    env = dict(clean_env, PRE_COMMIT_FROM_REF="main", PRE_COMMIT_TO_REF="feature")
    r = run_model_diff(["check", "--staged", "m.safetensors"], env, cwd=repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "merge-base:m.safetensors -> m.safetensors" in r.stdout and "frozen-layers" in r.stdout


def test_staged_outside_a_repository_exits_2(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """--staged needs a git work tree: a one-line error, exit 2."""
    r = run_model_diff(["check", "--staged", "x.safetensors"], clean_env, cwd=tmp_path)
    assert r.returncode == 2
    assert "not inside a git work tree" in r.stderr and r.stdout == ""


def test_check_accepts_rev_path_specs(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """`check HEAD~1:m.safetensors m.safetensors` reads the old side from history (LFS too)."""
    repo = repo_factory(lfs=True)
    a = base_state()
    commit_file(repo, "m.safetensors", a, clean_env, "base")
    commit_file(repo, "m.safetensors", frozen_step(a, FROZEN), clean_env, "frozen")
    r = run_model_diff(["check", "HEAD~1:m.safetensors", "m.safetensors"], clean_env, cwd=repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "(HEAD~1:m.safetensors -> m.safetensors)" in r.stdout and "frozen-layers" in r.stdout


def test_health_resolves_a_worktree_lfs_pointer(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """health on a pointer left in the checkout reads the object from the local LFS store."""
    repo = repo_factory(lfs=True)
    a = base_state()
    a["lm_head.weight"][0, 0] = np.inf
    commit_file(repo, "m.safetensors", a, clean_env, "base")
    (repo / "m.safetensors").write_text(git(repo, "show", "HEAD:m.safetensors", env=clean_env))
    r = run_model_diff(["health", "m.safetensors"], clean_env, cwd=repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lm_head.weight (1 Inf)" in r.stdout
