"""`git difftool -t model-diff` and `model-diff difftool`, driven through real git and git-lfs."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from model_diff.cli import cli
from model_diff.toy import save_safetensors
from tests.conftest import run_model_diff, scrubbed_env
from tests.gitdriver.history import History, build_history, git, toy

DIFFTOOL_CMD = f'"{sys.executable}" -m model_diff difftool "$LOCAL" "$REMOTE" "$MERGED"'
N_TENSORS = len(toy(0))


@pytest.fixture(scope="module")
def lfs_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, dict[str, str]]:
    """The three-commit LFS history after `model-diff install` (driver + difftool config)."""
    base = tmp_path_factory.mktemp("difftool")
    env = scrubbed_env(base / "home")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    history = build_history(base / "repo", env, lfs=True)
    proc = run_model_diff(["install"], env, cwd=history.root)
    assert proc.returncode == 0, proc.stderr
    assert git(history.root, env, "config", "difftool.model-diff.cmd").stdout.strip() == (
        DIFFTOOL_CMD
    )
    return history, env


def test_git_difftool_prints_metrics_and_insights(lfs_repo: tuple[History, dict[str, str]]) -> None:
    """Acceptance 2: `git difftool -y -t model-diff HEAD~1 -- model.safetensors` on LFS."""
    history, env = lfs_repo
    proc = git(
        history.root, env, "difftool", "-y", "-t", "model-diff", "HEAD~1", "--", "model.safetensors"
    )
    out = proc.stdout
    assert "=== model.safetensors ===" in out
    assert "a/model.safetensors -> b/model.safetensors" in out
    assert "cosine" in out and "relative change" in out
    # the fine-tune kept the embeddings bit-identical: the analysis must say so
    assert "(frozen-layers)" in out and "model.embed_tokens.weight" in out
    assert "model.layers.1.mlp.down_proj.weight" in out
    assert "/git-blob-" not in out  # temporary paths never reach the report


def test_git_difftool_reports_added_and_deleted_files_from_the_present_side(
    lfs_repo: tuple[History, dict[str, str]],
) -> None:
    """/dev/null sides: an added file reports its tensors, a deleted one likewise."""
    history, env = lfs_repo
    out = git(
        history.root,
        env,
        "difftool",
        "-y",
        "-t",
        "model-diff",
        "HEAD~1",
        "HEAD",
        "--",
        "new.safetensors",
        "old.safetensors",
    ).stdout
    assert f"=== new.safetensors ===\nadded: {N_TENSORS} tensors" in out
    assert f"=== old.safetensors ===\nremoved: {N_TENSORS} tensors" in out


def test_git_difftool_dir_diff_pairs_checkpoints_by_relative_path(
    lfs_repo: tuple[History, dict[str, str]],
) -> None:
    """--dir-diff hands over two folders: each checkpoint is paired and reported once."""
    history, env = lfs_repo
    out = git(
        history.root, env, "difftool", "-d", "-y", "-t", "model-diff", "HEAD~2", "HEAD"
    ).stdout
    heads = [ln for ln in out.splitlines() if ln.startswith("=== ")]
    assert heads == [
        "=== ckpt/renamed.safetensors ===",
        "=== model.safetensors ===",
        "=== moved.safetensors ===",
        "=== new.safetensors ===",
        "=== old.safetensors ===",
    ]
    assert "notes.txt" not in out
    assert out.count("(frozen-layers)") == 1  # only model.safetensors is a modified pair


def test_git_difftool_dir_diff_against_the_worktree_follows_symlinks(
    lfs_repo: tuple[History, dict[str, str]],
) -> None:
    """With the working tree as one side git links files into right/; they are read through."""
    history, env = lfs_repo
    out = git(history.root, env, "difftool", "-d", "-y", "-t", "model-diff", "HEAD~1").stdout
    assert "=== model.safetensors ===" in out and "(frozen-layers)" in out
    assert "=== new.safetensors ===\nadded:" in out
    assert "=== old.safetensors ===\nremoved:" in out


def _browser_script(tmp_path: Path) -> tuple[Path, Path]:
    record = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{record}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def test_html_report_is_opened_with_the_browser_named_by_BROWSER(
    lfs_repo: tuple[History, dict[str, str]], clean_env: dict[str, str], tmp_path: Path
) -> None:
    """--html writes the report to a temp file and hands its file:// URL to $BROWSER."""
    history, _ = lfs_repo
    script, record = _browser_script(tmp_path)
    env = {**clean_env, "BROWSER": str(script)}
    proc = run_model_diff(
        ["difftool", "--html", "model.safetensors", "new.safetensors", "model.safetensors"],
        env,
        cwd=history.root,
    )
    assert proc.returncode == 0, proc.stderr
    url = record.read_text().strip()
    assert url.startswith("file://") and url.endswith(".html")
    path = Path(url[len("file://") :])
    try:
        assert str(path) in proc.stdout and "no browser" not in proc.stdout
        page = path.read_text()
        assert page.startswith("<!DOCTYPE html>") and "model.embed_tokens.weight" in page
    finally:
        path.unlink()


def test_html_report_path_is_printed_when_no_browser_runs(
    lfs_repo: tuple[History, dict[str, str]], clean_env: dict[str, str], tmp_path: Path
) -> None:
    """With no usable browser the command still succeeds and says where the report is."""
    history, _ = lfs_repo
    env = {k: v for k, v in clean_env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["BROWSER"] = str(tmp_path / "no-such-browser")
    out_file = tmp_path / "report.html"
    proc = run_model_diff(
        ["difftool", "--html", "-o", str(out_file), "model.safetensors", "new.safetensors"],
        env,
        cwd=history.root,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{out_file} (no browser found: open it yourself)" in proc.stdout
    assert out_file.read_text().startswith("<!DOCTYPE html>")


def test_single_pair_json_is_the_engines_report(
    lfs_repo: tuple[History, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--format json for one pair prints the engine's JSON report for that pair."""
    history, _ = lfs_repo
    monkeypatch.chdir(history.root)
    result = CliRunner().invoke(
        cli,
        [
            "difftool",
            "--format",
            "json",
            "model.safetensors",
            "ckpt/renamed.safetensors",
            "x.safetensors",
        ],
    )
    doc = json.loads(result.stdout)
    assert doc["old_name"] == "a/x.safetensors" and doc["new_name"] == "b/x.safetensors"
    assert doc["summary"]["total_parameters"] == N_TENSORS


def test_unreadable_checkpoint_is_reported_and_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corrupt side prints one error naming the file, and exit 0 lets git go on."""
    monkeypatch.chdir(tmp_path)
    save_safetensors(tmp_path / "good.safetensors", toy(0))
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    result = CliRunner().invoke(
        cli, ["difftool", "good.safetensors", "bad.safetensors", "ckpt/model.safetensors"]
    )
    assert result.exit_code == 0
    assert "=== ckpt/model.safetensors ===\nerror: b/ckpt/model.safetensors:" in result.stdout
    assert result.stderr.count("\n") == 1 and "b/ckpt/model.safetensors" in result.stderr


def test_non_checkpoint_files_are_skipped_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git difftool` without a pathspec also hands over text files: they are skipped."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    result = CliRunner().invoke(cli, ["difftool", "a.txt", "b.txt", "notes.txt"])
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout == (
        "\n=== notes.txt ===\nskipped: not a checkpoint format model-diff reads\n"
    )


def test_dir_diff_folders_outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two folders pair by relative path; a file on one side only is an add or a delete."""
    monkeypatch.chdir(tmp_path)
    left, right = tmp_path / "left", tmp_path / "right"
    (left / "sub").mkdir(parents=True)
    (right / "sub").mkdir(parents=True)
    save_safetensors(left / "sub" / "m.safetensors", toy(0))
    save_safetensors(right / "sub" / "m.safetensors", toy(1))
    save_safetensors(left / "gone.safetensors", toy(2))
    save_safetensors(right / "new.npy.safetensors", toy(3))
    (right / "README.md").write_text("not a checkpoint\n")
    result = CliRunner().invoke(cli, ["difftool", str(left), str(right), ""])
    assert result.exit_code == 0, result.stderr
    heads = [ln for ln in result.stdout.splitlines() if ln.startswith("=== ")]
    assert heads == [
        "=== gone.safetensors ===",
        "=== new.npy.safetensors ===",
        "=== sub/m.safetensors ===",
    ]
    assert "removed: " in result.stdout and "added: " in result.stdout
    assert "a/sub/m.safetensors -> b/sub/m.safetensors" in result.stdout
    assert os.fspath(tmp_path) not in result.stdout
