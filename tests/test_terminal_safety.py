"""Acceptance 3 of "safe on any machine": a checkpoint whose tensor names carry terminal escape
sequences, BEL, DEL, an 8-bit CSI, a bidi override, a newline and GitHub workflow commands
(`::set-output ...`, `##[...]`) cannot reach a terminal or a CI log raw through any
human-facing output: reports, inspect, timeline, check / health / ci (text, markdown, json,
github), `diff`, difftool, the external diff driver and the textconv under real git.
(The progress line under a pty is covered in tests/model_diff/test_cli.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_diff.terminal import printable
from tests.conftest import run_model_diff, scrubbed_env
from tests.gitdriver.history import git, init_repo
from tests.hostile import HOSTILE_NAMES, MARKERS, assert_terminal_safe, hostile_pair

#: Checkpoint file names that are hostile too (git passes them to the drivers as they are).
HOSTILE_FILE = "ckpt\x1b]0;title\x07.safetensors"
NEWLINE_FILE = "two\nlines.safetensors"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict[str, str]]:
    """(old, new, repo, env): the pair on disk, and a repository whose last commit changes
    both model.safetensors and HOSTILE_FILE from old to new."""
    base = tmp_path_factory.mktemp("hostile")
    env = scrubbed_env(base / "home")
    old, new = hostile_pair(base / "pair")
    repo = base / "repo"
    init_repo(repo, env, lfs=False)
    for name in ("model.safetensors", HOSTILE_FILE, NEWLINE_FILE):
        (repo / name).write_bytes(old.read_bytes())
    git(repo, env, "add", ".")
    git(repo, env, "commit", "-qm", "old")
    for name in ("model.safetensors", HOSTILE_FILE, NEWLINE_FILE):
        (repo / name).write_bytes(new.read_bytes())
    git(repo, env, "commit", "-qam", "new")
    return old, new, repo, env


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    r = run_model_diff(args, env, cwd=cwd)
    assert r.returncode in (0, 1), (args, r.stderr)  # check/ci: 1 = policy failed
    assert_terminal_safe(r.stderr, what=f"stderr of {args[0]}")
    return r.stdout


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [("text", []), ("text", ["--color", "always"]), ("markdown", []), ("json", [])],
    ids=["text", "text-color", "markdown", "json"],
)
def test_compare_reports(
    hostile: tuple[Path, Path, Path, dict[str, str]], fmt: str, extra: list[str]
) -> None:
    """compare's text (plain and coloured), markdown and JSON reports."""
    old, new, _, env = hostile
    out = _run(["compare", str(old), str(new), "--format", fmt, *extra], env)
    assert_terminal_safe(out, what=f"compare {fmt}", sgr="--color" in extra)
    if "--color" in extra:
        assert "\x1b[1m" in out  # --color always wins over NO_COLOR (set in the test env)
    if fmt == "json":  # the data is kept: escapes decode to the exact names
        doc = json.loads(out)
        names = {t["name"] for group in doc["tensors"].values() for t in group}
        assert set(HOSTILE_NAMES) <= names
    else:
        assert all(m in out for m in MARKERS), out


def test_inspect_and_timeline(hostile: tuple[Path, Path, Path, dict[str, str]]) -> None:
    """inspect (text and JSON) and timeline name every tensor safely."""
    old, new, _, env = hostile
    text = _run(["inspect", str(new)], env)
    assert_terminal_safe(text, what="inspect")
    assert all(m in text for m in MARKERS)
    raw = _run(["inspect", str(new), "--format", "json"], env)
    assert_terminal_safe(raw, what="inspect json")
    assert {t["name"] for t in json.loads(raw)["tensor_info"]} >= set(HOSTILE_NAMES)
    assert_terminal_safe(_run(["timeline", str(old), str(new)], env), what="timeline")


@pytest.mark.parametrize("fmt", ["text", "markdown", "json", "github"])
def test_check_health_and_ci(hostile: tuple[Path, Path, Path, dict[str, str]], fmt: str) -> None:
    """check OLD NEW, health and ci in every format; github keeps only its annotations."""
    old, new, repo, env = hostile
    runs = {
        "check": ["check", str(old), str(new), "--format", fmt],
        "health": ["health", str(new), "--format", fmt],
        "ci": ["ci", "--base", "HEAD~1", "--format", fmt],
    }
    for name, args in runs.items():
        out = _run(args, env, cwd=repo)
        assert_terminal_safe(out, what=f"{name} {fmt}", annotations=fmt == "github")
        assert "forged header" in out, (name, fmt, out)  # the NaN tensor is named
        if fmt == "github":
            assert any(line.startswith("::error ") for line in out.splitlines())


def test_failed_files_output_keeps_one_line_per_file(
    hostile: tuple[Path, Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    """`failed-files` in $GITHUB_OUTPUT: a file name holding a newline stays one entry."""
    _, _, repo, env = hostile
    outputs = tmp_path / "github_output"
    r = run_model_diff(
        ["ci", "--base", "HEAD~1", "--format", "github"],
        dict(env, GITHUB_OUTPUT=str(outputs)),
        cwd=repo,
    )
    assert r.returncode == 1, r.stderr
    delim, rest = outputs.read_text().split("failed-files<<", 1)[1].split("\n", 1)
    files = rest.split(f"\n{delim}\n", 1)[0].split("\n")
    assert sorted(files) == sorted(
        printable(f) for f in ("model.safetensors", HOSTILE_FILE, NEWLINE_FILE)
    )


def test_diff_and_difftool(hostile: tuple[Path, Path, Path, dict[str, str]]) -> None:
    """`model-diff diff` over the commit (a hostile file name too) and the difftool."""
    old, new, repo, env = hostile
    for fmt in ("text", "markdown", "json"):
        out = _run(["diff", "HEAD~1", "HEAD", "--format", fmt], env, cwd=repo)
        assert_terminal_safe(out, what=f"diff {fmt}")
    out = _run(["diff", "HEAD~1", "HEAD"], env, cwd=repo)
    assert printable(HOSTILE_FILE) in out and all(m in out for m in MARKERS)
    out = _run(["difftool", str(old), str(new), HOSTILE_FILE], env)
    assert_terminal_safe(out, what="difftool")
    assert all(m in out for m in MARKERS)


def test_git_diff_with_the_external_driver_and_the_textconv(
    hostile: tuple[Path, Path, Path, dict[str, str]],
) -> None:
    """Real `git diff` through the ext-diff driver, and `git show --textconv` (which prints
    the textconv's lines unprefixed) for the hostile names and file name."""
    _, _, repo, env = hostile
    py = f'"{sys.executable}" -m model_diff'
    (repo / ".git" / "info" / "attributes").write_text("*.safetensors diff=model-diff\n")
    ext = git(
        repo, env, "-c", f"diff.model-diff.command={py} ext-diff", "diff", "HEAD~1", "HEAD"
    ).stdout
    assert_terminal_safe(ext, what="ext-diff")
    assert printable(HOSTILE_FILE) in ext and all(m in ext for m in MARKERS)
    for spec in ("HEAD:model.safetensors", f"HEAD:{HOSTILE_FILE}"):
        shown = subprocess.run(
            ["git", "-c", f"diff.model-diff.textconv={py} textconv", "show", "--textconv", spec],
            cwd=repo,
            env=dict(env, MODEL_DIFF_NO_CACHE="1"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert_terminal_safe(shown, what=f"textconv {spec}")
        assert all(m in shown for m in ("pwned", "set-output name=x")), shown
