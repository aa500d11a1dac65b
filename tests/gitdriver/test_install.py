"""install / uninstall / status against real git (and git-lfs) in scrubbed tmp repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_diff.gitdriver import attributes
from model_diff.gitdriver.attributes import any_case_glob
from model_diff.gitdriver.status import sample_path

from tests.conftest import run_model_diff

PATTERNS = attributes.DEFAULT_PATTERNS


def git(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout


def check_attr(repo: Path, env: dict[str, str], path: str, attr: str = "diff") -> str:
    return git(["check-attr", attr, "--", path], repo, env).strip().rsplit(": ", 1)[-1]


@pytest.fixture
def lfs_repo(tmp_path: Path, clean_env: dict[str, str]) -> Path:
    """A repo with git-lfs tracking *.bin, a hand-written attributes tail and config comment."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(["init", "-q", "-b", "main"], repo, clean_env)
    git(["lfs", "install", "--local"], repo, clean_env)
    git(["lfs", "track", "*.bin"], repo, clean_env)
    with open(repo / ".gitattributes", "a") as f:
        f.write("# hand-written, keep me\n*.md   text eol=lf\n*.txt text")  # no final newline
    with open(repo / ".git" / "config", "a") as f:
        f.write("# a user comment\n[user]\n\tname = Someone ; trailing comment\n")
    return repo


def snapshot(*paths: Path) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.exists() else None) for p in paths}


def test_local_install_routes_every_pattern_and_uninstall_restores_bytes(
    lfs_repo: Path, clean_env: dict[str, str]
) -> None:
    """install sets the diff and merge drivers for every default pattern (the LFS line's
    diff=lfs and merge=lfs edited in place); a second install changes nothing; uninstall gives
    back .git/config and .gitattributes byte for byte (acceptance 5)."""
    files = (lfs_repo / ".git" / "config", lfs_repo / ".gitattributes")
    before = snapshot(*files)
    r = run_model_diff(["install"], clean_env, cwd=lfs_repo)
    assert r.returncode == 0, r.stderr
    for pat in PATTERNS:
        for sample in (sample_path(pat), sample_path(pat).upper()):
            for attr in ("diff", "merge"):
                assert check_attr(lfs_repo, clean_env, sample, attr) == "model-diff", (pat, attr)
    text = (lfs_repo / ".gitattributes").read_text()
    assert text.startswith("*.bin filter=lfs diff=model-diff merge=model-diff -text\n")
    assert "*.bin diff=model-diff" not in text  # edited in place, not appended
    assert "# model-diff: edited *.bin diff=lfs merge=lfs\n" in text
    textconv = git(["config", "--local", "diff.model-diff.textconv"], lfs_repo, clean_env)
    assert " -m model_diff textconv" in textconv and textconv.startswith('"')
    driver = git(["config", "--local", "merge.model-diff.driver"], lfs_repo, clean_env)
    assert driver.startswith('"') and driver.endswith(" -m model_diff merge-driver %O %A %B %P\n")
    tool = git(
        ["config", "--local", "--get-regexp", r"^mergetool\.model-diff\."], lfs_repo, clean_env
    )
    assert '-m model_diff mergetool "$BASE" "$LOCAL" "$REMOTE" "$MERGED"' in tool
    assert "mergetool.model-diff.trustexitcode true" in tool
    installed = snapshot(*files)

    r2 = run_model_diff(["install"], clean_env, cwd=lfs_repo)
    assert r2.returncode == 0 and "nothing changed" in r2.stdout
    assert snapshot(*files) == installed

    r3 = run_model_diff(["uninstall"], clean_env, cwd=lfs_repo)
    assert r3.returncode == 0, r3.stderr
    assert snapshot(*files) == before
    r4 = run_model_diff(["uninstall"], clean_env, cwd=lfs_repo)
    assert r4.returncode == 0 and "nothing changed" in r4.stdout
    assert snapshot(*files) == before


def test_install_over_an_older_install_adds_the_merge_driver(
    lfs_repo: Path, clean_env: dict[str, str]
) -> None:
    """A repository installed before the merge driver existed (diff only: the LFS line's
    diff=lfs edited, the block recording just that) gains merge=model-diff on a new install;
    uninstall still restores the original bytes of both files."""
    files = (lfs_repo / ".git" / "config", lfs_repo / ".gitattributes")
    before = snapshot(*files)
    old_block = (
        f"{attributes.BEGIN}\n"
        "# model-diff: added the final newline of the line above this block\n"
        "# model-diff: edited *.bin diff=lfs\n"
        "*.safetensors diff=model-diff\n# <<< model-diff\n"
    )
    text = before[files[1]]
    assert text is not None
    edited = text.replace(b"*.bin filter=lfs diff=lfs", b"*.bin filter=lfs diff=model-diff")
    files[1].write_bytes(edited + b"\n" + old_block.encode())
    assert check_attr(lfs_repo, clean_env, "m.bin", "merge") == "lfs"
    r = run_model_diff(
        ["install", "--pattern", "*.bin", "--pattern", "*.safetensors"], clean_env, cwd=lfs_repo
    )
    assert r.returncode == 0, r.stderr
    for sample in ("m.bin", "m.safetensors"):
        assert check_attr(lfs_repo, clean_env, sample, "merge") == "model-diff"
        assert check_attr(lfs_repo, clean_env, sample, "diff") == "model-diff"
    assert "# model-diff: edited *.bin diff=lfs merge=lfs\n" in files[1].read_text()
    assert run_model_diff(["uninstall"], clean_env, cwd=lfs_repo).returncode == 0
    assert snapshot(*files) == before


def test_later_lfs_track_keeps_the_edited_line(lfs_repo: Path, clean_env: dict[str, str]) -> None:
    """After install, `git lfs track '*.bin'` again leaves diff=model-diff in force."""
    run_model_diff(["install"], clean_env, cwd=lfs_repo)
    git(["lfs", "track", "*.bin"], lfs_repo, clean_env)
    assert check_attr(lfs_repo, clean_env, "w/model.bin") == "model-diff"


def test_global_install_restores_gitconfig_with_comments(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """--global writes ~/.gitconfig and the XDG attributes file; uninstall restores the
    commented, newline-less ~/.gitconfig byte for byte and removes the attributes file it made."""
    home = Path(clean_env["HOME"])
    gitconfig = Path(clean_env["GIT_CONFIG_GLOBAL"])
    gitconfig.write_text(
        "# my settings\n[core]\n\teditor = vim ; the only editor\n"
        "# trailing comment without newline"
    )
    attrs = Path(clean_env["XDG_CONFIG_HOME"]) / "git" / "attributes"
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    before = snapshot(gitconfig, attrs)
    r = run_model_diff(["install", "--global"], clean_env, cwd=outside)
    assert r.returncode == 0, r.stderr
    assert "model_diff textconv" in gitconfig.read_text()
    assert "# my settings" in gitconfig.read_text()
    assert f"{any_case_glob('.safetensors')} diff=model-diff" in attrs.read_text()
    # a brand-new repo picks the global driver up
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(["init", "-q"], repo, clean_env)
    assert check_attr(repo, clean_env, "a.safetensors") == "model-diff"
    assert check_attr(repo, clean_env, "B.SafeTensors") == "model-diff"
    installed = snapshot(gitconfig, attrs)
    assert run_model_diff(["install", "--global"], clean_env, cwd=outside).returncode == 0
    assert snapshot(gitconfig, attrs) == installed
    r = run_model_diff(["uninstall", "--global"], clean_env, cwd=outside)
    assert r.returncode == 0, r.stderr
    assert snapshot(gitconfig, attrs) == before
    assert home.is_dir()


def test_system_install_uses_system_config_and_its_attributes_file(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """--system writes GIT_CONFIG_SYSTEM and the system core.attributesFile; uninstall undoes."""
    env = dict(clean_env)
    env.pop("GIT_CONFIG_NOSYSTEM")
    system_cfg = tmp_path / "gitconfig-system"
    system_attrs = tmp_path / "system-attributes"
    system_cfg.write_text(f"[core]\n\tattributesFile = {system_attrs}\n")
    system_attrs.write_text("*.psd binary\n")
    env["GIT_CONFIG_SYSTEM"] = str(system_cfg)
    before = snapshot(system_cfg, system_attrs)
    r = run_model_diff(["install", "--system", "--pattern", "*.safetensors"], env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "model_diff textconv" in system_cfg.read_text()
    assert system_attrs.read_text().endswith(
        "*.safetensors diff=model-diff merge=model-diff\n# <<< model-diff\n"
    )
    assert run_model_diff(["uninstall", "--system"], env, cwd=tmp_path).returncode == 0
    assert snapshot(system_cfg, system_attrs) == before


def test_local_install_outside_a_repository_is_a_clear_error(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """install (local) outside a repository: exit 2, one error line, nothing written."""
    outside = tmp_path / "plain"
    outside.mkdir()
    r = run_model_diff(["install"], clean_env, cwd=outside)
    assert r.returncode == 2
    assert "not inside a git repository" in r.stderr and "--global" in r.stderr
    assert list(outside.iterdir()) == []
    assert not Path(clean_env["GIT_CONFIG_GLOBAL"]).exists()


def test_install_refuses_to_overwrite_a_foreign_driver(
    lfs_repo: Path, clean_env: dict[str, str]
) -> None:
    """A diff.model-diff.textconv set by someone else is not silently replaced (exit 2)."""
    git(["config", "diff.model-diff.textconv", "my-own-tool"], lfs_repo, clean_env)
    before = snapshot(lfs_repo / ".gitattributes")
    r = run_model_diff(["install"], clean_env, cwd=lfs_repo)
    assert r.returncode == 2 and "not by model-diff" in r.stderr
    assert git(["config", "diff.model-diff.textconv"], lfs_repo, clean_env) == "my-own-tool\n"
    assert snapshot(lfs_repo / ".gitattributes") == before


def test_cachetextconv_and_external_flags(lfs_repo: Path, clean_env: dict[str, str]) -> None:
    """--cachetextconv embeds the output-format version; --external adds the ext-diff command;
    a plain install afterwards takes both back off; uninstall still restores the bytes."""
    cfg = lfs_repo / ".git" / "config"
    before = cfg.read_bytes()
    r = run_model_diff(["install", "--cachetextconv", "--external"], clean_env, cwd=lfs_repo)
    assert r.returncode == 0, r.stderr
    keys = git(["config", "--get-regexp", r"^diff\.model-diff\."], lfs_repo, clean_env)
    assert "textconv --format-version=1" in keys
    assert "diff.model-diff.cachetextconv true" in keys
    assert "-m model_diff ext-diff" in keys
    assert "refs/notes/textconv/model-diff" in r.stdout
    status = run_model_diff(["status"], clean_env, cwd=lfs_repo)
    assert "external diff command is on" in status.stdout
    assert run_model_diff(["install"], clean_env, cwd=lfs_repo).returncode == 0
    keys = git(["config", "--get-regexp", r"^diff\.model-diff\."], lfs_repo, clean_env)
    assert "cachetextconv" not in keys and "ext-diff" not in keys
    assert run_model_diff(["uninstall"], clean_env, cwd=lfs_repo).returncode == 0
    assert cfg.read_bytes() == before


def test_status_warns_that_a_fresh_clone_falls_back(
    lfs_repo: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """status: configured + committed attributes -> fresh-clone warning; in the clone itself
    (attributes cloned, driver not) -> 'no driver is configured' and the pointer fallback."""
    r = run_model_diff(["install"], clean_env, cwd=lfs_repo)
    assert r.returncode == 0, r.stderr
    git(["add", ".gitattributes"], lfs_repo, clean_env)
    git(["commit", "-q", "-m", "attrs"], lfs_repo, clean_env)
    st = run_model_diff(["status"], clean_env, cwd=lfs_repo)
    assert st.returncode == 0, st.stderr
    bins = any_case_glob(".bin")
    assert (
        bins in st.stdout
        and "model.bin: diff=model-diff  [ok]; merge=model-diff  [ok]" in st.stdout
    )
    assert "git-lfs/" in st.stdout and f"LFS patterns: {bins}" in st.stdout
    assert "a fresh clone will show pointer/binary diffs" in st.stdout
    clone = tmp_path / "clone"
    git(["clone", "-q", str(lfs_repo), str(clone)], tmp_path, clean_env)
    st2 = run_model_diff(["status"], clean_env, cwd=clone)
    assert "no driver is configured: git silently falls back" in st2.stdout
    assert "no merge driver is configured: git falls back to a text merge" in st2.stdout
    assert "driver config:\n  (none" in st2.stdout


# -- the attribute edits themselves, byte for byte --------------------------------------------

_LINES = st.sampled_from(
    [
        "*.bin filter=lfs diff=lfs merge=lfs -text",
        "*.safetensors filter=lfs diff=lfs -text",
        "*.pt -diff",
        "# a comment",
        "",
        "  ",
        "*.npy diff=model-diff",
        "*.txt text",
        "docs/** linguist-documentation",
    ]
)


@settings(deadline=None)  # a loaded CI machine must not fail a pure text function
@given(st.lists(_LINES, max_size=6), st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans())
def test_attribute_install_then_uninstall_round_trips(
    lines: list[str], nl: str, final_newline: bool, exists: bool
) -> None:
    """uninstall_text(install_text(t)) == t for any attributes text (CRLF, no final newline,
    missing file), and installing twice equals installing once."""
    text: str | None = nl.join(lines) + (nl if final_newline and lines else "")
    if not exists:
        text = None
    installed = attributes.install_text(text, list(PATTERNS))
    assert attributes.install_text(installed, list(PATTERNS)) == installed
    restored = attributes.uninstall_text(installed)
    assert restored == text or (text == "" and restored is None)


def test_external_driver_hands_git_difftool_back_to_the_tool(
    lfs_repo: Path, clean_env: dict[str, str]
) -> None:
    """With `install --external`, `git difftool -x CMD` and `git difftool -t TOOL` still run the
    tool (the external command would otherwise shadow difftool, GIT-NOTES 3d)."""
    assert run_model_diff(["install", "--external"], clean_env, cwd=lfs_repo).returncode == 0
    (lfs_repo / "w.npy").write_bytes(b"old")
    git(["add", "-A"], lfs_repo, clean_env)
    git(["commit", "-q", "-m", "one"], lfs_repo, clean_env)
    (lfs_repo / "w.npy").write_bytes(b"new")
    git(["config", "difftool.probe.cmd", 'echo "PROBE $LOCAL $MERGED"'], lfs_repo, clean_env)
    extcmd = git(["difftool", "-y", "-x", "echo EXTCMD"], lfs_repo, clean_env)
    assert extcmd.startswith("EXTCMD ") and extcmd.rstrip().endswith(" w.npy")
    tool = git(["difftool", "-y", "-t", "probe"], lfs_repo, clean_env)
    assert tool.startswith("PROBE ") and tool.rstrip().endswith(" w.npy")
    cmd = git(["config", "diff.model-diff.command"], lfs_repo, clean_env)
    assert cmd.startswith('case "$GIT_EXTERNAL_DIFF" in *git-difftool--helper)')
