"""The external diff driver (`diff.model-diff.command`) under real `git diff`, LFS included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_diff.toy import fine_tune, save_safetensors
from tests.conftest import run_model_diff, scrubbed_env
from tests.gitdriver.history import History, build_history, git, init_repo, toy

EXT_CMD = f'"{sys.executable}" -m model_diff ext-diff'
N_TENSORS = len(toy(0))


def _use_driver(root: Path) -> None:
    # .git/info/attributes wins over .gitattributes (and its LFS diff=lfs) without touching it
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "attributes").write_text("*.safetensors diff=model-diff\n")


def _diff(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return git(root, env, "-c", f"diff.model-diff.command={EXT_CMD}", "diff", *args)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "lfs"])
def repo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[History, dict[str, str]]:
    base = tmp_path_factory.mktemp("extdiff")
    env = scrubbed_env(base / "home")
    history = build_history(base / "repo", env, lfs=request.param)
    _use_driver(history.root)
    return history, env


def test_git_diff_runs_the_driver_for_renames_adds_deletes_and_edits(
    repo: tuple[History, dict[str, str]],
) -> None:
    """9-arg rename, 7-arg add/delete (mode '.') and modify: each gets its own header."""
    history, env = repo
    proc = _diff(history.root, env, "HEAD~2", "HEAD")
    out = proc.stdout
    assert proc.returncode == 0 and "external diff died" not in proc.stderr
    assert (
        "diff --git a/moved.safetensors b/ckpt/renamed.safetensors\n"
        "similarity index 100%\nrename from moved.safetensors\n"
        "rename to ckpt/renamed.safetensors\n"
    ) in out
    assert "+++ b/ckpt/renamed.safetensors\ncontent identical\n" in out
    assert ("diff --git a/new.safetensors b/new.safetensors\nnew file mode 100644\n") in out
    assert f"--- /dev/null\n+++ b/new.safetensors\nadded: {N_TENSORS} tensors" in out
    assert "diff --git a/old.safetensors b/old.safetensors\ndeleted file mode 100644\n" in out
    assert f"+++ /dev/null\nremoved: {N_TENSORS} tensors" in out
    model = out[out.index("diff --git a/model.safetensors") : out.index("diff --git a/new.")]
    assert f"tensors: {N_TENSORS - 1} modified, 1 unchanged" in model
    assert "~ model.layers.1.mlp.down_proj.weight  float32 [16, 64]  rel " in model
    assert "model.embed_tokens.weight" not in model.split("insights:")[0]  # frozen: not listed
    assert "(frozen-layers)" in model
    assert "-v0\n+v2" in out  # other files keep git's own diff


@pytest.mark.parametrize("repo", [True], ids=["lfs"], indirect=True)
def test_pointers_reaching_the_driver_are_resolved_from_the_store(
    repo: tuple[History, dict[str, str]],
) -> None:
    """GIT_LFS_SKIP_SMUDGE=1 hands over pointers; the output is the smudged one."""
    history, env = repo
    assert history.lfs
    smudged = _diff(history.root, env, "HEAD~1", "HEAD", "--", "model.safetensors").stdout
    skipped = _diff(
        history.root,
        {**env, "GIT_LFS_SKIP_SMUDGE": "1"},
        "HEAD~1",
        "HEAD",
        "--",
        "model.safetensors",
    ).stdout
    assert skipped == smudged and "~ model.layers.0" in smudged


def test_worktree_side_and_a_corrupt_checkpoint(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """7-arg worktree form reads the file on disk; a corrupt file is one error line, exit 0."""
    root = tmp_path / "repo"
    init_repo(root, clean_env, lfs=False)
    _use_driver(root)
    base = toy(0)
    save_safetensors(root / "m.safetensors", base)
    (root / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    git(root, clean_env, "add", "-A")
    git(root, clean_env, "commit", "-q", "-m", "c0")
    save_safetensors(root / "m.safetensors", fine_tune(base, seed=5))
    (root / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00[]garbage")
    proc = _diff(root, clean_env)
    assert proc.returncode == 0, proc.stderr
    assert "+++ b/m.safetensors\nold: " in proc.stdout
    assert "~ model.layers.0.self_attn.q_proj.weight" in proc.stdout
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("model-diff: error:")]
    assert len(errors) == 1 and "broken.safetensors" in errors[0]


def test_closed_pipe_is_not_an_error(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """`git diff | head`: the driver's stdout closes early; it still exits 0, silently."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_safetensors(a, toy(0))
    save_safetensors(b, toy(1))
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write raises EPIPE
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_diff",
            "ext-diff",
            "m.safetensors",
            str(a),
            "1" * 40,
            "100644",
            str(b),
            "2" * 40,
            "100644",
        ],
        env=clean_env,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(write_end)
    assert proc.returncode == 0
    assert proc.stderr == ""


@pytest.mark.parametrize(
    "args, expected",
    [
        (["conflicted.safetensors"], "* Unmerged path conflicted.safetensors\n"),
        (
            ["a", "b", "c"],
            "model-diff: error: ext-diff takes the 7 or 9 arguments git passes, got 3",
        ),
    ],
)
def test_unusual_argument_counts_print_a_line_and_exit_zero(
    args: list[str], expected: str, clean_env: dict[str, str], tmp_path: Path
) -> None:
    """git's 1-argument unmerged form is named; a wrong count is an error line, exit 0."""
    proc = run_model_diff(["ext-diff", *args], clean_env, cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith(expected)
