"""Git LFS pointers: parsing, and resolving objects from a real repository's LFS store."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from model_diff.errors import CheckpointError, LFSObjectMissingError
from model_diff.formats import lfs, open_checkpoint
from model_diff.formats.lfs import LFSPointer, parse_pointer, resolve_pointer
from model_diff.toy import save_safetensors

OID = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"
POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 12345\n".encode()
STATE = {"w": np.arange(10, dtype=np.float32), "b": np.ones(3, dtype=np.int8)}


def test_parse_pointer_reads_oid_and_size() -> None:
    """A canonical pointer parses to (oid, size)."""
    assert parse_pointer(POINTER) == LFSPointer(OID, 12345)


def test_parse_pointer_accepts_extension_lines() -> None:
    """Pointer extension lines (``ext-0-...``) do not stop a pointer being one."""
    data = POINTER.replace(b"oid", b"ext-0-foo sha256:" + b"a" * 64 + b"\noid")
    assert parse_pointer(data) == LFSPointer(OID, 12345)


@pytest.mark.parametrize(
    "data",
    [
        POINTER.replace(b"spec/v1", b"spec/v2"),
        POINTER.replace(OID.encode(), b"xyz"),
        POINTER.replace(b"size 12345\n", b""),
        POINTER.replace(b"size 12345", b"size -1"),
        POINTER + b"x" * 1024,
        b"\x00" * 100,
    ],
    ids=["other-version", "bad-oid", "no-size", "negative-size", "too-large", "binary"],
)
def test_parse_pointer_rejects_non_pointers(data: bytes) -> None:
    """Anything but a well-formed small pointer is not a pointer (None)."""
    assert parse_pointer(data) is None


def test_pointer_size_limit_is_gits_lfs_cutoff() -> None:
    """A pointer is smaller than 1024 bytes (git-lfs's blobSizeCutoff): padded with a long
    extension line to 1023 bytes it is one, to exactly 1024 it is not."""
    assert lfs.POINTER_SIZE_LIMIT == 1024

    def padded(n: int) -> bytes:
        line = b"ext-9-pad sha256:"
        return POINTER + line + b"a" * (n - len(POINTER) - len(line) - 1) + b"\n"

    assert len(padded(1023)) == 1023 and parse_pointer(padded(1023)) == LFSPointer(OID, 12345)
    assert len(padded(1024)) == 1024 and parse_pointer(padded(1024)) is None
    assert lfs.could_be_pointer(1023) and not lfs.could_be_pointer(1024)


def git(env: dict[str, str], cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def lfs_repo(
    tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, dict[str, str]]:
    """A real repo with model.safetensors committed through Git LFS; returns (repo, pointer
    copy outside the repo, env)."""
    if shutil.which("git-lfs") is None:
        pytest.skip("git-lfs is not installed")
    for var in ("GIT_DIR", "GIT_COMMON_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(clean_env, repo, "init", "-q", "-b", "main")
    git(clean_env, repo, "lfs", "install", "--local")
    git(clean_env, repo, "lfs", "track", "*.safetensors")
    save_safetensors(repo / "model.safetensors", STATE)
    git(clean_env, repo, "add", ".gitattributes", "model.safetensors")
    git(clean_env, repo, "commit", "-q", "-m", "model")
    pointer = tmp_path / "outside" / "model.safetensors"
    pointer.parent.mkdir()
    pointer.write_text(git(clean_env, repo, "show", "HEAD:model.safetensors"))
    return repo, pointer, clean_env


def test_pointer_is_resolved_from_the_store_of_the_current_repository(
    lfs_repo: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pointer outside the repo, opened with cwd inside it, reads the stored object."""
    repo, pointer, _ = lfs_repo
    assert parse_pointer(pointer.read_bytes()) is not None
    monkeypatch.chdir(repo)
    with open_checkpoint(pointer) as ckpt:
        assert ckpt.format == "safetensors" and ckpt.path == str(pointer)
        assert ckpt["w"].array().tolist() == list(range(10))


def test_pointer_in_a_linked_worktree_uses_the_shared_store(
    lfs_repo: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worktree checked out without smudging holds pointers; its .git file and commondir
    lead to the main repository's LFS store (cwd elsewhere: found from the file's dir)."""
    repo, _, env = lfs_repo
    wt = repo.parent / "wt"
    git({**env, "GIT_LFS_SKIP_SMUDGE": "1"}, repo, "worktree", "add", "-q", str(wt))
    assert (wt / ".git").is_file()
    assert parse_pointer((wt / "model.safetensors").read_bytes()) is not None
    monkeypatch.chdir(repo.parent)
    with open_checkpoint(wt / "model.safetensors") as ckpt:
        assert ckpt["b"].array().tolist() == [1, 1, 1]


def test_git_dir_environment_is_honoured(
    lfs_repo: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $GIT_DIR set (as git sets it for the commands it runs) cwd does not matter."""
    repo, pointer, _ = lfs_repo
    monkeypatch.chdir(pointer.parent)
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    with open_checkpoint(pointer) as ckpt:
        assert len(ckpt) == 2


def test_extension_of_the_pointer_does_not_decide_the_format(
    lfs_repo: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pointer saved as ``.bin`` whose object is safetensors reads as safetensors."""
    repo, pointer, _ = lfs_repo
    renamed = pointer.with_name("pytorch_model.bin")
    pointer.rename(renamed)
    monkeypatch.chdir(repo)
    with open_checkpoint(renamed) as ckpt:
        assert ckpt.format == "safetensors"


def test_missing_object_names_oid_size_and_fetch(
    lfs_repo: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the object in the store: LFSObjectMissingError with oid, size and the fix."""
    repo, pointer, _ = lfs_repo
    shutil.rmtree(repo / ".git" / "lfs" / "objects")
    monkeypatch.chdir(repo)
    p = parse_pointer(pointer.read_bytes())
    assert p is not None
    with pytest.raises(LFSObjectMissingError) as info:
        open_checkpoint(pointer)
    msg = str(info.value)
    assert p.oid[:12] in msg and f"{p.size} bytes" in msg and "git lfs fetch" in msg
    assert str(pointer) in msg and "\n" not in msg


def test_pointer_outside_any_repository_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No repository around the pointer or cwd: the object is reported missing."""
    for var in ("GIT_DIR", "GIT_COMMON_DIR"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "p.safetensors").write_bytes(POINTER)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LFSObjectMissingError):
        resolve_pointer(
            LFSPointer(OID, 12345), path=str(tmp_path / "p.safetensors"), starts=[str(tmp_path)]
        )


def test_object_with_the_wrong_size_is_reported_corrupt(
    lfs_repo: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object whose size disagrees with the pointer is a corrupt store, not data."""
    repo, pointer, _ = lfs_repo
    p = parse_pointer(pointer.read_bytes())
    assert p is not None
    obj = repo / ".git" / "lfs" / "objects" / p.oid[:2] / p.oid[2:4] / p.oid
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes()[:-4])
    monkeypatch.chdir(repo)
    with pytest.raises(CheckpointError, match="corrupt LFS store"):
        open_checkpoint(pointer)


def test_malformed_pointer_is_a_clear_error(tmp_path: Path) -> None:
    """A file that starts like a pointer but lacks its fields is not passed to a reader."""
    (tmp_path / "m.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(CheckpointError, match="malformed Git LFS pointer"):
        open_checkpoint(tmp_path / "m.safetensors")


def test_lfs_storage_setting_moves_the_store(
    tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``lfs.storage`` set (relative to the git dir), objects are found where git-lfs put
    them, not in .git/lfs."""
    if shutil.which("git-lfs") is None:
        pytest.skip("git-lfs is not installed")
    for var in ("GIT_DIR", "GIT_COMMON_DIR"):
        monkeypatch.delenv(var, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(clean_env, repo, "init", "-q")
    git(clean_env, repo, "config", "lfs.storage", "../lfs-elsewhere")
    git(clean_env, repo, "lfs", "install", "--local")
    git(clean_env, repo, "lfs", "track", "*.safetensors")
    save_safetensors(repo / "m.safetensors", STATE)
    git(clean_env, repo, "add", ".")
    git(clean_env, repo, "commit", "-q", "-m", "m")
    assert (repo / "lfs-elsewhere" / "objects").is_dir()
    assert not (repo / ".git" / "lfs" / "objects").exists()
    pointer = tmp_path / "pointer.safetensors"
    pointer.write_text(git(clean_env, repo, "show", "HEAD:m.safetensors"))
    monkeypatch.chdir(repo)
    with open_checkpoint(pointer) as ckpt:
        assert ckpt["w"].array().tolist() == list(range(10))
