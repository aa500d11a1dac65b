"""action.yml's shell steps, run as a runner would, against a shallow LFS clone of an origin.

The expressions (`${{ inputs.* }}`) are what GitHub would substitute into each step's `env`;
setup-python and the pip install step are replaced by a `model-diff` wrapper on PATH that
runs this checkout. Fetching uses a file:// origin, which git and git-lfs serve offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from model_diff import toy
from tests.conftest import PROJECT_ROOT

from .conftest import base_state, frozen_step, git, init_repo

ACTION = yaml.safe_load((PROJECT_ROOT / "action.yml").read_text())
STEPS = {s.get("id"): s for s in ACTION["runs"]["steps"]}


def run_step(
    step_id: str, cwd: Path, env: dict[str, str], values: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    step = STEPS[step_id]
    assert set(step.get("env", {})) == set(values), "test must supply every env of the step"
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=cwd,
        env={**env, **values},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def runner(tmp_path: Path, clean_env: dict[str, str]) -> tuple[Path, str, dict[str, str]]:
    """An LFS origin with base -> head, and a depth-1 clone of head made like actions/checkout."""
    origin = init_repo(tmp_path / "origin", clean_env, lfs=True)
    a = base_state()
    toy.save_safetensors(origin / "m.safetensors", a)
    git(origin, "add", "-A", env=clean_env)
    git(origin, "commit", "-qm", "base", env=clean_env)
    base = git(origin, "rev-parse", "HEAD", env=clean_env).strip()
    toy.save_safetensors(origin / "m.safetensors", frozen_step(a, "model.layers.0."))
    toy.save_safetensors(origin / "skipped.safetensors", {"w": np.array([np.nan], np.float32)})
    git(origin, "add", "-A", env=clean_env)
    git(origin, "commit", "-qm", "head", env=clean_env)

    work = tmp_path / "work"
    env_skip = dict(clean_env, GIT_LFS_SKIP_SMUDGE="1")
    git(tmp_path, "clone", "-q", "--depth=1", f"file://{origin}", str(work), env=env_skip)
    git(work, "lfs", "install", "--local", env=clean_env)
    git(work, "lfs", "pull", env=clean_env)  # checkout's lfs: true: the head's objects only

    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "model-diff"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m model_diff "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "runner_temp").mkdir()
    env = dict(
        clean_env,
        PATH=f"{bindir}{os.pathsep}{clean_env['PATH']}",
        GITHUB_OUTPUT=str(tmp_path / "output"),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        RUNNER_TEMP=str(tmp_path / "runner_temp"),
    )
    return work, base, env


def test_action_fetches_base_and_lfs_then_fails_the_step(
    runner: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    """Shallow head-only clone: the fetch step brings the base + its LFS objects; the check
    step (paths glob honoured, not shell-expanded) fails with annotations and outputs."""
    work, base, env = runner
    assert git(work, "cat-file", "-t", base, env=env, check=False) == ""  # not fetched yet
    r = run_step("fetch", work, env, {"BASE": base, "HEAD_REV": "HEAD"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert git(work, "cat-file", "-t", base, env=env).strip() == "commit"

    r = run_step(
        "check",
        work,
        env,
        {
            "BASE": base,
            "HEAD_REV": "HEAD",
            "PATHS": "m.*  nothing/*.pt",
            "FAIL_ON": "error",
            "POLICY": "",
        },
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("::error file=m.safetensors,title=model-diff frozen-layers%3A")
    assert "skipped.safetensors" not in r.stdout  # excluded by the paths input
    outputs = (tmp_path / "output").read_text()
    assert "result=fail\n" in outputs and "errors=1\n" in outputs
    report = tmp_path / "runner_temp" / "model-diff-report.md"
    assert f"report={report}\n" in outputs
    text = report.read_text()
    assert "| m.safetensors | error | frozen-layers |" in text  # the full findings table
    assert f"## model-diff: `{base}:m.safetensors` → `HEAD:m.safetensors`" in text  # + report
    assert "| m.safetensors |" in (tmp_path / "summary.md").read_text()

    r = run_step(
        "check",
        work,
        env,
        {"BASE": base, "HEAD_REV": "HEAD", "PATHS": "m.*", "FAIL_ON": "never", "POLICY": ""},
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_action_skips_a_new_branch_push(clean_env: dict[str, str], tmp_path: Path) -> None:
    """github.event.before is all zeros on a new branch: a notice and skip=true, exit 0."""
    env = dict(clean_env, GITHUB_OUTPUT=str(tmp_path / "output"))
    r = run_step("fetch", tmp_path, env, {"BASE": "0" * 40, "HEAD_REV": "HEAD"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("::notice title=model-diff::new branch")
    assert (tmp_path / "output").read_text() == "skip=true\n"
    assert STEPS["check"]["if"] == "steps.fetch.outputs.skip != 'true'"
