"""The textconv driver under real git + git-lfs (acceptance 1, 3 and 4 of issue 5).

One LFS repository per module (v1 -> v2 with one tensor changed, driver installed with
``model-diff install``); tests that need to break it work on a copy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_model_diff, scrubbed_env
from tests.gitdriver.lfsrepo import (
    changed_lines,
    git,
    init_lfs_repo,
    small_model,
    tensor_names,
    write_model,
)

CHANGED = "model.layers.1.mlp.down_proj.weight"
STAGED_CHANGE = "model.layers.0.self_attn.q_proj.weight"


@dataclass
class Repo:
    path: Path
    env: dict[str, str]
    v1: dict[str, np.ndarray]
    v2: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    base = tmp_path_factory.mktemp("lfsgit")
    env = scrubbed_env(base / "home")
    path = base / "repo"
    init_lfs_repo(path, env)
    r = run_model_diff(["install"], env, cwd=path)
    assert r.returncode == 0, r.stderr
    v1 = small_model()
    write_model(path / "model.safetensors", v1)
    git(["add", "-A"], path, env)
    git(["commit", "-q", "-m", "v1"], path, env)
    v2 = dict(v1)
    v2[CHANGED] = v1[CHANGED] + np.float32(0.5)
    write_model(path / "model.safetensors", v2)
    git(["commit", "-q", "-am", "v2"], path, env)
    assert git(["lfs", "ls-files"], path, env).stdout.count("model.safetensors") == 1
    return Repo(path, env, v1, v2)


def assert_only_changed(diff: str, expected: set[str]) -> None:
    minus, plus = changed_lines(diff)
    assert tensor_names(minus) == expected, diff
    assert tensor_names(plus) == expected, diff
    # the header's whole-file hash changes with any tensor
    assert any(ln.startswith("checkpoint safetensors tensors=") for ln in minus + plus)


def test_git_diff_against_head_1_shows_only_the_changed_tensor(repo: Repo) -> None:
    """`git diff HEAD~1` (worktree side included) marks exactly the changed tensor -/+."""
    proc = git(["diff", "HEAD~1"], repo.path, repo.env)
    assert "model-diff textconv v1 full" in proc.stdout
    assert_only_changed(proc.stdout, {CHANGED})
    context = [ln for ln in proc.stdout.splitlines() if ln.startswith(" model.")]
    assert context, "unchanged tensors appear as context lines"


def test_git_log_p_and_git_show_use_the_textconv(repo: Repo) -> None:
    """`git log -p` shows per-tensor lines for both commits; `git show` for the last one."""
    log = git(["log", "-p", "--", "model.safetensors"], repo.path, repo.env).stdout
    assert log.count("model-diff textconv v1 full") == 2  # v2: context; v1: + (added)
    v2_patch = log.split("\ncommit ")[0]
    assert_only_changed(v2_patch, {CHANGED})
    v1_patch = log.split("\ncommit ")[1]
    _, added = changed_lines(v1_patch)
    assert tensor_names(added) == set(repo.v1)
    show = git(["show"], repo.path, repo.env).stdout
    assert_only_changed(show, {CHANGED})


def test_git_diff_cached_shows_the_staged_tensor(repo: Repo) -> None:
    """`git diff --cached` marks the tensor changed in the index only."""
    v3 = dict(repo.v2)
    v3[STAGED_CHANGE] = -repo.v2[STAGED_CHANGE]
    try:
        write_model(repo.path / "model.safetensors", v3)
        git(["add", "model.safetensors"], repo.path, repo.env)
        proc = git(["diff", "--cached"], repo.path, repo.env)
        assert_only_changed(proc.stdout, {STAGED_CHANGE})
    finally:
        git(["reset", "-q", "--hard", "HEAD"], repo.path, repo.env)


def test_word_diff_highlights_the_changed_fields(repo: Repo) -> None:
    """`git diff --word-diff` keeps the name and marks hash and statistics of the changed line."""
    out = git(["diff", "--word-diff", "HEAD~1", "HEAD"], repo.path, repo.env).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith(CHANGED + " "))
    assert "[-xxh3:" in line and "{+xxh3:" in line and "{+min=" in line
    assert " std=0.25" in line  # an unchanged field stays outside the markers


def test_pointers_give_the_same_output_as_smudged_content(repo: Repo) -> None:
    """GIT_LFS_SKIP_SMUDGE=1 (pointers reach the driver): same bytes as the smudged run, with
    and without model-diff's cache."""
    env = dict(repo.env, MODEL_DIFF_NO_CACHE="1")
    smudged = git(["diff", "HEAD~1", "HEAD"], repo.path, env).stdout
    pointers = git(["diff", "HEAD~1", "HEAD"], repo.path, dict(env, GIT_LFS_SKIP_SMUDGE="1")).stdout
    assert CHANGED in smudged and "version https://git-lfs" not in pointers
    assert pointers == smudged
    cached = git(
        ["diff", "HEAD~1", "HEAD"], repo.path, dict(repo.env, GIT_LFS_SKIP_SMUDGE="1")
    ).stdout
    assert cached == smudged


def _lfs_object(repo: Path, oid: str) -> Path:
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def test_missing_object_gives_the_not_fetched_line_and_is_not_cached(
    repo: Repo, tmp_path: Path
) -> None:
    """Object of HEAD~1 deleted: `git -c filter.lfs.required=false diff` exits 0 with the
    'not fetched' line (oid, size, git lfs fetch); once the object is back, real lines show."""
    copy = tmp_path / "copy"
    shutil.copytree(repo.path, copy, symlinks=True)
    pointer = git(["show", "HEAD~1:model.safetensors"], copy, repo.env).stdout
    oid = pointer.split("oid sha256:")[1].split()[0]
    size = int(pointer.split("size ")[1].split()[0])
    obj = _lfs_object(copy, oid)
    saved = tmp_path / "saved-object"
    shutil.move(obj, saved)
    shutil.rmtree(copy / ".git" / "model-diff", ignore_errors=True)  # start with no cache
    proc = git(["-c", "filter.lfs.required=false", "diff", "HEAD~1", "HEAD"], copy, repo.env)
    expected = (
        f"-model-diff textconv: Git LFS object sha256:{oid} ({size} bytes) is not "
        f"fetched; run `git lfs fetch` to see its tensors"
    )
    assert expected in proc.stdout.splitlines()
    _, plus = changed_lines(proc.stdout)
    assert tensor_names(plus) == set(repo.v2)  # the present side is shown in full
    shutil.move(saved, obj)
    again = git(["-c", "filter.lfs.required=false", "diff", "HEAD~1", "HEAD"], copy, repo.env)
    assert "not fetched" not in again.stdout
    assert_only_changed(again.stdout, {CHANGED})


def test_corrupt_committed_checkpoint_is_an_error_line_and_git_exits_0(
    repo: Repo, tmp_path: Path
) -> None:
    """A truncated checkpoint committed: the textconv prints one error line, git diff and
    git log -p exit 0 and still show the good side."""
    copy = tmp_path / "corrupt"
    shutil.copytree(repo.path, copy, symlinks=True)
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[: len(data) // 2])
    git(["commit", "-q", "-am", "corrupt"], copy, repo.env)
    proc = git(["diff", "HEAD~1", "HEAD"], copy, repo.env, check=False)
    assert proc.returncode == 0, proc.stderr
    minus, plus = changed_lines(proc.stdout)
    assert len(plus) == 1 and plus[0].startswith("model-diff textconv: error: model.safetensors")
    assert "/tmp" not in plus[0] and "git-blob" not in plus[0]
    assert tensor_names(minus) == set(repo.v2)
    log = git(["log", "-p", "-1"], copy, repo.env, check=False)
    assert log.returncode == 0 and "model-diff textconv: error:" in log.stdout


def test_status_reports_the_content_cache(repo: Repo) -> None:
    """After diffs, `model-diff status` shows model-diff's cache under the git common dir."""
    git(["diff", "HEAD~1", "HEAD"], repo.path, repo.env)
    st = run_model_diff(["status"], repo.env, cwd=repo.path)
    cache_dir = repo.path.resolve() / ".git" / "model-diff" / "textconv-cache"
    line = next(ln for ln in st.stdout.splitlines() if ln.startswith("textconv cache: "))
    assert line.startswith(f"textconv cache: {cache_dir} (")
    assert int(line.split("(")[1].split()[0]) >= 2


def test_cachetextconv_notes_are_keyed_by_the_versioned_command(repo: Repo, tmp_path: Path) -> None:
    """install --cachetextconv: git stores notes whose commit message is the command with
    --format-version, and serves a later diff from them without running the driver."""
    copy = tmp_path / "notes"
    shutil.copytree(repo.path, copy, symlinks=True)
    assert run_model_diff(["install", "--cachetextconv"], repo.env, cwd=copy).returncode == 0
    first = git(["diff", "HEAD~1", "HEAD"], copy, repo.env).stdout
    msg = git(["log", "-1", "--format=%B", "refs/notes/textconv/model-diff"], copy, repo.env).stdout
    assert "-m model_diff textconv --format-version=1" in msg
    shutil.rmtree(copy / ".git" / "lfs" / "objects")
    shutil.rmtree(copy / ".git" / "model-diff")
    again = git(["diff", "HEAD~1", "HEAD"], copy, repo.env)
    assert again.stdout == first  # no object to smudge, no model-diff cache: served from notes
    st = run_model_diff(["status"], repo.env, cwd=copy)
    assert "git's textconv cache: refs/notes/textconv/model-diff" in st.stdout


def test_difftool_still_runs_the_tool_with_the_external_driver_installed(
    repo: Repo, tmp_path: Path
) -> None:
    """Acceptance 2, install side: after `install --external`, `git difftool -y -t model-diff`
    prints the difftool report (metrics + insights), while `git diff` runs ext-diff."""
    copy = tmp_path / "ext"
    shutil.copytree(repo.path, copy, symlinks=True)
    assert run_model_diff(["install", "--external"], repo.env, cwd=copy).returncode == 0
    tool = git(
        ["difftool", "-y", "-t", "model-diff", "HEAD~1", "--", "model.safetensors"], copy, repo.env
    ).stdout
    assert "Insights (" in tool and CHANGED in tool
    assert "diff --git" not in tool  # not the external driver's output
    ext = git(["diff", "HEAD~1", "HEAD"], copy, repo.env).stdout
    assert ext.startswith("diff --git a/model.safetensors b/model.safetensors")
    assert CHANGED in ext and "model-diff textconv" not in ext
