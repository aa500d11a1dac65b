"""Reading checkpoints at revisions and listing changed checkpoints, against real git repos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gitdriver.revisions import (
    Change,
    blob_at,
    changed_checkpoints,
    merge_base,
    open_repo,
    read_blob_bytes,
    split_spec,
)
from model_diff.errors import GitError
from model_diff.toy import save_safetensors
from tests.gitdriver.history import History, build_history, git, init_repo, scrubbed_env, toy


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "lfs"])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("rev-lfs" if request.param else "rev-plain")
    return build_history(base / "repo", scrubbed_env(base / "home"), lfs=request.param)


EXPECTED = [
    Change("renamed", "moved.safetensors", "ckpt/renamed.safetensors", "HEAD~2", "HEAD", 100),
    Change("modified", "model.safetensors", "model.safetensors", "HEAD~2", "HEAD"),
    Change("added", None, "new.safetensors", "HEAD~2", "HEAD"),
    Change("removed", "old.safetensors", None, "HEAD~2", "HEAD"),
]


def test_changes_between_revisions_list_each_kind_and_skip_other_files(history: History) -> None:
    """HEAD~2..HEAD: one rename, one modification, one add, one removal; notes.txt ignored."""
    assert changed_checkpoints("HEAD~2", "HEAD", cwd=str(history.root)) == EXPECTED


def test_pathspecs_are_relative_to_the_callers_directory(history: History) -> None:
    """A directory pathspec from a subdirectory and a glob select only matching changes."""
    in_sub = changed_checkpoints("HEAD~2", "HEAD", ["."], cwd=str(history.root / "ckpt"))
    assert [c.path for c in in_sub] == ["ckpt/renamed.safetensors"]
    globbed = changed_checkpoints("HEAD~2", "HEAD", ["*ew.safetensors"], cwd=str(history.root))
    assert [c.path for c in globbed] == ["new.safetensors"]


def test_renamed_from_maps_new_paths_to_old(history: History) -> None:
    """renamed_from gives the hooks each renamed checkpoint's previous path."""
    with open_repo(history.root) as repo:
        assert repo.renamed_from("HEAD~2", "HEAD") == {
            "ckpt/renamed.safetensors": "moved.safetensors"}
        assert repo.renamed_from("HEAD~1", "HEAD") == {}


def test_lfs_pointer_blobs_resolve_to_the_store_object(history: History) -> None:
    """In an LFS repo the blob is a pointer whose object file holds the committed bytes."""
    with open_repo(history.root) as repo:
        ref = repo.blob("HEAD", "model.safetensors")
        on_disk = (history.root / "model.safetensors").read_bytes()
        if not history.lfs:
            assert ref.lfs_oid is None
            assert read_blob_bytes(repo, "HEAD", "model.safetensors") == on_disk
            return
        assert ref.lfs_oid == hashlib.sha256(on_disk).hexdigest()
        assert read_blob_bytes(repo, "HEAD", "model.safetensors").startswith(b"version ")
        obj = repo.lfs_object_path(ref.lfs_oid, ref.lfs_size or 0, display="x")
        assert Path(obj).read_bytes() == on_disk
        assert "/lfs/objects/" in obj


def test_blob_at_is_none_for_paths_absent_at_a_revision(history: History) -> None:
    """blob_at answers None for a file new since the revision, and errors on a bad revision."""
    with open_repo(history.root) as repo:
        assert blob_at(repo, "HEAD~1", "new.safetensors") is None
        assert blob_at(repo, "HEAD", "new.safetensors") is not None
        with pytest.raises(GitError, match="unknown revision 'nope'"):
            blob_at(repo, "nope", "new.safetensors")


def test_unknown_revision_and_missing_path_are_typed_errors_with_fixes(history: History) -> None:
    """Each failure names what was asked and the command that shows what exists."""
    with open_repo(history.root) as repo:
        with pytest.raises(GitError, match=r"unknown revision 'HEAD~9'.*git log"):
            repo.commit("HEAD~9")
        with pytest.raises(GitError, match=r"'absent.safetensors' does not exist in HEAD.*ls-tree"):
            repo.blob("HEAD", "absent.safetensors")
        with pytest.raises(GitError, match="is a directory"):
            repo.blob("HEAD", "ckpt")


def test_outside_a_repository_is_a_typed_error(tmp_path: Path) -> None:
    """open_repo outside any repository says so and how to fix it."""
    with pytest.raises(GitError, match=r"not inside a git repository.*git init"):
        open_repo(tmp_path)


def test_merge_base_of_two_branches(tmp_path: Path) -> None:
    """merge_base finds the fork point of two branches, as `git merge-base` does."""
    env = scrubbed_env(tmp_path / "home")
    root = tmp_path / "repo"
    init_repo(root, env, lfs=False)
    (root / "a.txt").write_text("a\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "base")
    git(root, env, "checkout", "-q", "-b", "topic")
    (root / "b.txt").write_text("b\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "topic")
    git(root, env, "checkout", "-q", "main")
    (root / "c.txt").write_text("c\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "main")
    expected = git(root, env, "merge-base", "main", "topic").stdout.strip()
    assert merge_base("main", "topic", cwd=str(root)) == expected
    assert merge_base("main", "topic", cwd=str(root)) != git(root, env, "rev-parse",
                                                              "main").stdout.strip()


@pytest.mark.parametrize("lfs", [False, True], ids=["plain", "lfs"])
def test_worktree_side_sees_edits_deletions_renames_and_new_files(tmp_path: Path,
                                                                  lfs: bool) -> None:
    """rev2=None compares with the files on disk, as a pre-commit hook sees them."""
    env = scrubbed_env(tmp_path / "home")
    root = tmp_path / "repo"
    init_repo(root, env, lfs=lfs)
    for name, seed in [("a.safetensors", 0), ("b.safetensors", 1), ("c.safetensors", 2),
                       ("same.safetensors", 3)]:
        save_safetensors(root / name, toy(seed))
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "c0")
    assert changed_checkpoints("HEAD", cwd=str(root)) == []
    save_safetensors(root / "a.safetensors", toy(7))  # same size, new content
    (root / "b.safetensors").unlink()
    git(root, env, "mv", "c.safetensors", "d.safetensors")
    save_safetensors(root / "e.safetensors", toy(8))
    git(root, env, "add", "e.safetensors")
    save_safetensors(root / "untracked.safetensors", toy(9))
    assert changed_checkpoints("HEAD", cwd=str(root)) == [
        Change("modified", "a.safetensors", "a.safetensors", "HEAD", None),
        Change("removed", "b.safetensors", None, "HEAD", None),
        Change("renamed", "c.safetensors", "d.safetensors", "HEAD", None, 100),
        Change("added", None, "e.safetensors", "HEAD", None),
    ]


def test_an_existing_path_is_never_read_as_a_revision(tmp_path: Path) -> None:
    """A file whose name contains ':' wins over the REV:path reading."""
    odd = tmp_path / "HEAD:model.safetensors"
    odd.write_bytes(b"x")
    assert split_spec(str(odd)) is None
    assert split_spec("HEAD~2:ckpt/a:b.safetensors") == ("HEAD~2", "ckpt/a:b.safetensors")
    assert split_spec("model.safetensors") is None
