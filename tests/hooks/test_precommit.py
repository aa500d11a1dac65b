"""The shipped hooks under the real `pre-commit try-repo`, plain and Git LFS checkpoints.

pre-commit builds the hook's virtualenv and `pip install`s this checkout into it
(``language: python``). Where the base interpreter already has our dependencies, the venv
sees them (``VIRTUALENV_SYSTEM_SITE_PACKAGES``) and pip never goes to an index, which keeps
the test offline and fast; otherwise pip installs them from the index. The build and install
of model-diff itself is real either way. try-repo builds a fresh environment per call, so each call
checks many files at once and the test reads the per-file verdicts from the hook output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_diff import toy
from tests.conftest import PROJECT_ROOT

from .conftest import base_state, frozen_step, git, healthy_step, init_repo, nan_step

pytestmark = pytest.mark.slow

FROZEN = "model.layers.1.mlp."


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory, module_env: dict[str, str]) -> Path:
    """A committed copy of this checkout (tracked + untracked, not ignored files)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    dest = tmp_path_factory.mktemp("hookrepo") / "model-diff"
    for rel in filter(None, listed.decode().split("\0")):
        src = PROJECT_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    init_repo(dest, module_env)
    git(dest, "add", "-A", env=module_env)
    git(dest, "commit", "-qm", "hook repo", env=module_env)
    return dest


def _base_python_has_the_dependencies() -> bool:
    """Whether the interpreter virtualenv builds hook envs from can import our dependencies."""
    base = getattr(sys, "_base_executable", sys.executable)
    probe = "import numpy, safetensors, dulwich, click, jinja2, ml_dtypes, xxhash"
    return subprocess.run([base, "-c", probe], capture_output=True, check=False).returncode == 0


def try_repo(hook_repo: Path, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo HOOK_REPO --verbose` (all hooks) on ``repo``'s staged files."""
    run_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the hook's own install
    # NO_PERIODIC_UPDATE: virtualenv otherwise spends ~10 s looking for newer seed wheels.
    run_env.update(VIRTUALENV_NO_PERIODIC_UPDATE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if _base_python_has_the_dependencies():
        # Offline and fast: the hook env sees the installed dependencies and pip never goes
        # to an index; model-diff itself is still built and installed for real. Where the
        # base interpreter lacks them (tests run from a venv), pip installs from the index.
        run_env.update(
            VIRTUALENV_SYSTEM_SITE_PACKAGES="1", PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0"
        )
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo), "--verbose"],
        cwd=repo,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def hook_sections(output: str) -> dict[str, str]:
    """pre-commit's output split per hook id (the text after `- hook id: ID`)."""
    parts = output.split("- hook id: ")
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


def verdicts(section: str) -> dict[str, str]:
    """`path -> status` from model-diff's text report inside one hook's output."""
    out = {}
    for line in section.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("ok", "WARN", "FAILED", "UNREADABLE"):
            out[rest.strip().split(" (")[0]] = word
    return out


def write(repo: Path, rel: str, state: dict[str, np.ndarray]) -> None:
    (repo / rel).parent.mkdir(parents=True, exist_ok=True)
    toy.save_safetensors(repo / rel, state)


def test_try_repo_check_and_health_hooks(
    hook_repo: Path, module_env: dict[str, str], tmp_path: Path
) -> None:
    """Acceptance 1+2: NaN and a disallowed frozen layer fail, healthy steps and an allowed
    frozen layer pass (plain and LFS); health fails Inf and truncated new files."""
    env = module_env
    repo = init_repo(tmp_path / "work", env)
    (repo / ".gitattributes").write_text("lfs/*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    git(repo, "lfs", "install", "--local", env=env)
    (repo / "pyproject.toml").write_text(
        '[tool.model-diff.check]\nallow_frozen = ["model.embed_tokens.*"]\n'
    )
    a = base_state()
    for d in ("plain", "lfs"):
        for name in ("nan", "frozen", "healthy"):
            write(repo, f"{d}/{name}.safetensors", a)
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-qm", "base", env=env)
    assert git(repo, "show", "HEAD:lfs/nan.safetensors", env=env).startswith("version https")

    for d in ("plain", "lfs"):
        write(repo, f"{d}/nan.safetensors", nan_step(a))
        write(repo, f"{d}/frozen.safetensors", frozen_step(a, FROZEN))
        write(repo, f"{d}/healthy.safetensors", healthy_step(a))
    inf = healthy_step(a)
    inf["lm_head.weight"][2, 3] = np.inf
    write(repo, "new/inf.safetensors", inf)
    write(repo, "new/fine.safetensors", healthy_step(a))
    full = (repo / "new" / "fine.safetensors").read_bytes()
    (repo / "new" / "truncated.safetensors").write_bytes(full[: len(full) // 2])
    git(repo, "add", "-A", env=env)

    r = try_repo(hook_repo, repo, env)
    assert r.returncode == 1, r.stdout + r.stderr
    sections = hook_sections(r.stdout)
    check, health = sections["model-diff-check"], sections["model-diff-health"]
    assert verdicts(check) == {
        "plain/nan.safetensors": "FAILED",
        "plain/frozen.safetensors": "FAILED",
        "plain/healthy.safetensors": "ok",
        "lfs/nan.safetensors": "FAILED",
        "lfs/frozen.safetensors": "FAILED",
        "lfs/healthy.safetensors": "ok",
        "new/inf.safetensors": "FAILED",
        "new/fine.safetensors": "ok",
        "new/truncated.safetensors": "UNREADABLE",
    }, check
    assert check.count("frozen-layers: 3 tensor(s)") == 2  # plain and LFS
    assert check.count("model.layers.0.mlp.up_proj.weight (3 NaN)") == 2
    assert "lfs/frozen.safetensors (HEAD:lfs/frozen.safetensors -> " in check
    assert verdicts(health)["new/inf.safetensors"] == "FAILED"
    assert verdicts(health)["new/truncated.safetensors"] == "UNREADABLE"
    assert verdicts(health)["new/fine.safetensors"] == "ok"
    assert "lm_head.weight (1 Inf)" in health

    # Now: no NaN, no new broken files, the frozen layer allowed by the committed policy,
    # and an unstaged NaN edit on top of a staged healthy step (pre-commit stashes it).
    git(repo, "rm", "-q", "--cached", "new/inf.safetensors", "new/truncated.safetensors", env=env)
    for d in ("plain", "lfs"):
        write(repo, f"{d}/nan.safetensors", healthy_step(a, seed=5))
    (repo / "pyproject.toml").write_text(f'[tool.model-diff.check]\nallow_frozen = ["{FROZEN}*"]\n')
    git(repo, "add", "plain", "lfs", "pyproject.toml", "new/fine.safetensors", env=env)
    (repo / "new" / "inf.safetensors").unlink()
    (repo / "new" / "truncated.safetensors").unlink()
    write(repo, "plain/healthy.safetensors", nan_step(a))  # unstaged

    r = try_repo(hook_repo, repo, env)
    assert r.returncode == 0, r.stdout + r.stderr
    sections = hook_sections(r.stdout)
    assert set(verdicts(sections["model-diff-check"]).values()) == {"ok"}
    assert len(verdicts(sections["model-diff-check"])) == 7
    assert set(verdicts(sections["model-diff-health"]).values()) == {"ok"}
    # the unstaged NaN edit is back in the working tree afterwards
    assert (
        git(repo, "status", "--porcelain", "plain/healthy.safetensors", env=env)
        == "MM plain/healthy.safetensors\n"
    )


def test_manifest_is_valid_for_pre_commit(module_env: dict[str, str]) -> None:
    """`pre-commit validate-manifest` accepts .pre-commit-hooks.yaml."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pre_commit",
            "validate-manifest",
            str(PROJECT_ROOT / ".pre-commit-hooks.yaml"),
        ],
        env=module_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
