"""Git LFS pointer files: recognise one and find its object in the local LFS store.

A pointer is a small text file (``version https://git-lfs.github.com/spec/v1``,
``oid sha256:<64 hex>``, ``size N``). Its object lives at
``<common git dir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>``; linked worktrees share the store
of the common dir. The git dir is found by walking up from the current directory and from the
pointer's own directory (``.git`` may be a directory or a ``gitdir:`` file).

``store_object`` goes the other way, for the merge driver: a file moved into the store as a new
object (named by its sha256, as git-lfs names it), with ``pointer_bytes`` the pointer git-lfs
itself would write for it.

This module runs inside the git textconv: stdlib only, no dulwich, no subprocess, no network.
It never fetches anything: a missing object is an ``LFSObjectMissingError``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import CheckpointError, LFSObjectMissingError

#: A pointer is smaller than this many bytes (git-lfs's ``blobSizeCutoff``): larger files are
#: never read as pointers. The one size rule for every reader of pointers.
POINTER_SIZE_LIMIT = 1024
VERSION_LINE = b"version https://git-lfs.github.com/spec/v1"
_OID = re.compile(rb"oid sha256:([0-9a-f]{64})")
_SIZE = re.compile(rb"size (0|[1-9][0-9]*)")


@dataclass(frozen=True)
class LFSPointer:
    """A parsed pointer: the object's sha256 and size."""

    oid: str  # sha256, 64 lower-case hex digits
    size: int  # bytes of the object


def parse_pointer(data: bytes) -> LFSPointer | None:
    """The pointer in ``data``, or None when ``data`` is not a Git LFS pointer."""
    if not could_be_pointer(len(data)) or not data.startswith(VERSION_LINE):
        return None
    lines = data.rstrip(b"\n").split(b"\n")
    if lines[0] != VERSION_LINE:
        return None
    oid: str | None = None
    size: int | None = None
    for line in lines[1:]:
        if m := _OID.fullmatch(line):
            oid = m.group(1).decode()
        elif m := _SIZE.fullmatch(line):
            size = int(m.group(1))
        elif b" " not in line:  # every pointer line is "key value"
            return None
    if oid is None or size is None:
        return None
    return LFSPointer(oid, size)


def read_pointer(path: str) -> LFSPointer | None:
    """The pointer stored in the file at ``path`` (None for any other file)."""
    with open(path, "rb") as f:
        data = f.read(POINTER_SIZE_LIMIT)
    return parse_pointer(data)


def could_be_pointer(size: int) -> bool:
    """Whether a file (or blob) of ``size`` bytes is small enough to be a pointer."""
    return size < POINTER_SIZE_LIMIT


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _git_dir_at(directory: str) -> str | None:
    """The git dir of the worktree (or bare repository) rooted at ``directory``, if any."""
    dotgit = os.path.join(directory, ".git")
    if os.path.isdir(dotgit):
        return dotgit
    if os.path.isfile(dotgit):
        text = _read_text(dotgit)
        if text and text.startswith("gitdir:"):
            target = text[len("gitdir:") :].strip()
            return os.path.normpath(os.path.join(directory, target))
        return None
    if os.path.isfile(os.path.join(directory, "HEAD")) and os.path.isdir(
        os.path.join(directory, "objects")
    ):
        return directory  # a bare repository (or we are inside a .git directory)
    return None


def _common_dir(git_dir: str) -> str:
    text = _read_text(os.path.join(git_dir, "commondir"))
    if text:
        return os.path.normpath(os.path.join(git_dir, text))
    return git_dir


def git_common_dirs(starts: Iterable[str]) -> Iterator[str]:
    """Common git dirs that may hold the LFS store: ``$GIT_COMMON_DIR``/``$GIT_DIR`` first
    (git sets them for the commands it runs), then each start directory and its parents."""
    seen: set[str] = set()
    env_common = os.environ.get("GIT_COMMON_DIR")
    env_dir = os.environ.get("GIT_DIR")
    candidates: list[str] = []
    if env_common:
        candidates.append(os.path.abspath(env_common))
    if env_dir:
        candidates.append(_common_dir(os.path.abspath(env_dir)))
    for c in candidates:
        if c not in seen:
            seen.add(c)
            yield c
    for start in starts:
        d = os.path.abspath(start)
        while True:
            g = _git_dir_at(d)
            if g is not None:
                c = _common_dir(g)
                if c not in seen:
                    seen.add(c)
                    yield c
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent


_SECTION = re.compile(r'\s*\[\s*([A-Za-z0-9.-]+)\s*(?:"[^"]*")?\s*\]\s*(.*)')
_STORAGE = re.compile(r"\s*storage\s*=\s*(.*?)\s*$", re.IGNORECASE)


def lfs_storage(common_dir: str) -> str:
    """The repository's LFS directory: ``lfs.storage`` from its ``config`` when set (relative
    paths are relative to the git dir, as git-lfs reads them), else ``<common dir>/lfs``.

    A line scan of the repository's own config file, not a full git-config parser: includes,
    ``.lfsconfig`` and user/system config are not consulted (git-lfs's default store is what
    nearly every repository uses).
    """
    section = ""
    storage: str | None = None
    try:
        with open(os.path.join(common_dir, "config"), encoding="utf-8") as f:
            for line in f:
                rest = line
                if m := _SECTION.match(line):
                    section = m.group(1).lower()
                    rest = m.group(2)
                if section == "lfs" and (s := _STORAGE.match(rest)):
                    storage = s.group(1).split(";")[0].split("#")[0].strip().strip('"')
    except (OSError, UnicodeDecodeError):
        storage = None
    if storage:
        return os.path.normpath(os.path.join(common_dir, os.path.expanduser(storage)))
    return os.path.join(common_dir, "lfs")


def object_path(common_dir: str, oid: str) -> str:
    return os.path.join(lfs_storage(common_dir), "objects", oid[0:2], oid[2:4], oid)


def resolve_pointer(
    pointer: LFSPointer,
    *,
    path: str | None = None,
    label: str | None = None,
    starts: Iterable[str] | None = None,
) -> str:
    """Path of the pointer's object in a local LFS store.

    Looks in the repositories around ``starts`` (default: the current directory and the
    pointer file ``path``'s directory). Raises ``LFSObjectMissingError`` when no store holds
    it, ``CheckpointError`` when the stored object's size disagrees with the pointer.
    """
    label = label or path
    if starts is None:
        starts = [os.getcwd()]
        if path is not None:
            starts.append(os.path.dirname(os.path.abspath(path)))
    for common in git_common_dirs(starts):
        obj = object_path(common, pointer.oid)
        if os.path.isfile(obj):
            size = os.path.getsize(obj)
            if size != pointer.size:
                raise CheckpointError(
                    f"Git LFS object {pointer.oid[:12]} is {size} bytes but the pointer says "
                    f"{pointer.size} (corrupt LFS store)",
                    path=label,
                    hint="run `git lfs fsck`, then `git lfs fetch` to restore it",
                )
            return obj
    raise LFSObjectMissingError(path=label, oid=pointer.oid, size=pointer.size)


def pointer_bytes(pointer: LFSPointer) -> bytes:
    """The pointer file for an object, byte for byte what ``git lfs clean`` writes."""
    return b"%s\noid sha256:%s\nsize %d\n" % (VERSION_LINE, pointer.oid.encode(), pointer.size)


def temp_dir(common_dir: str) -> str:
    """A folder on the store's file system for files that become objects (git-lfs's own
    ``<lfs dir>/tmp``), created if needed."""
    path = os.path.join(lfs_storage(common_dir), "tmp")
    os.makedirs(path, exist_ok=True)
    return path


def store_object(common_dir: str, src: str) -> LFSPointer:
    """Move the file ``src`` into the repository's LFS store as the object named by its
    sha256 (``<lfs dir>/objects/aa/bb/<oid>``, ``lfs.storage`` respected) and return its
    pointer. An object already stored under that name (the same bytes) is kept and ``src``
    removed. The object gets the permissions a new file gets (``0666`` less the umask)."""
    import hashlib  # here, not at the top: reading a checkpoint never needs it (start-up)
    import shutil

    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    pointer = LFSPointer(digest.hexdigest(), size)
    dest = object_path(common_dir, pointer.oid)
    if os.path.isfile(dest) and os.path.getsize(dest) == size:
        os.unlink(src)
        return pointer
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(src, 0o666 & ~umask)
    try:
        os.replace(src, dest)
    except OSError:  # another file system (lfs.storage elsewhere): copy, then remove
        shutil.copyfile(src, dest + ".tmp")
        os.replace(dest + ".tmp", dest)
        with contextlib.suppress(OSError):
            os.unlink(src)
    return pointer
