"""Shared fixtures: a scrubbed environment for subprocesses and git, the project root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_SCRUB_PREFIXES = ("GIT_", "PRE_COMMIT", "GITHUB_", "MODEL_DIFF_")


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


def scrubbed_env(home: Path) -> dict[str, str]:
    """Environment for subprocesses: no user/system git config, this checkout importable.

    Also for module-scoped fixtures (shared repositories) that cannot use ``clean_env``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.com",
        GIT_AUTHOR_DATE="2026-01-01T00:00:00Z",
        GIT_COMMITTER_DATE="2026-01-01T00:00:00Z",
        PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        PAGER="cat",
        GIT_PAGER="cat",
        NO_COLOR="1",
    )
    env.pop("BROWSER", None)
    return env


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """``scrubbed_env`` with HOME in this test's tmp_path."""
    return scrubbed_env(tmp_path / "home")


def run_model_diff(
    args: list[str], env: dict[str, str], cwd: Path | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m model_diff ARGS`` in a subprocess (text mode, output captured)."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "model_diff", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        **kw,
    )
