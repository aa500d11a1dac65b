"""Checkpoints at git revisions, read through dulwich without a checkout.

``open_spec("HEAD~2:ckpt/model.safetensors")`` opens a checkpoint as it was at a revision;
``changed_checkpoints("HEAD~2", "HEAD")`` lists the checkpoint files that were added,
removed, renamed or modified between two revisions (or between a revision and the working
tree). Git LFS pointers are resolved from the repository's LFS store (the common dir, so
linked worktrees share it) and the object file itself is what the reader maps: no copies.
A plain blob is streamed once into a private temporary directory, removed when the
checkpoint closes, because readers map files.

This module must not print, exit or download LFS objects, and never inflates a large blob in
memory: it asks ``git cat-file`` for blob sizes and streams plain blobs into files. It raises
``model_diff.errors.GitError`` (not a repository, unknown revision, path not in a tree) and
``LFSObjectMissingError`` with the fix in the message.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from dulwich.diff_tree import (
    CHANGE_ADD,
    CHANGE_DELETE,
    CHANGE_MODIFY,
    _similarity_score,
    tree_changes,
)
from dulwich.errors import NotGitRepository
from dulwich.graph import find_merge_base
from dulwich.index import IndexEntry
from dulwich.lfs import LFSPointer, LFSStore
from dulwich.object_store import tree_lookup_path
from dulwich.objects import Blob, Commit, ObjectID, Tag, Tree
from dulwich.objectspec import parse_object
from dulwich.repo import Repo

from model_diff.checkpoint import Checkpoint
from model_diff.errors import GitError, LFSObjectMissingError, ModelDiffError

#: File extensions treated as checkpoints by ``diff`` and the hooks (lower-case).
CHECKPOINT_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".npy")

#: git-lfs pointer files are always smaller than this (git-lfs spec).
_POINTER_MAX = 1024
_HASH_CHUNK = 1 << 20

Status = Literal["added", "removed", "renamed", "modified"]


def is_checkpoint_path(path: str) -> bool:
    """Whether ``path`` has one of the checkpoint extensions (case-insensitive)."""
    return path.lower().endswith(CHECKPOINT_EXTENSIONS)


@dataclass(frozen=True)
class BlobRef:
    """A file in a tree: its git blob id, mode and, for a Git LFS pointer, the object."""

    path: str
    sha: str
    mode: int
    lfs_oid: str | None = None
    lfs_size: int | None = None


@dataclass(frozen=True)
class Change:
    """One changed checkpoint file between two sides (``new_rev`` None = working tree).

    ``similarity`` is the rename detector's score in percent (renames only; 100 means the
    content is identical). Paths are relative to the repository's top level, with ``/``.
    """

    status: Status
    old_path: str | None
    new_path: str | None
    old_rev: str | None
    new_rev: str | None
    similarity: int | None = None

    @property
    def path(self) -> str:
        """The path the change is known by: the new one, or the old one when removed."""
        return self.new_path or self.old_path or ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the repository -------------------------------------------------------------------------


class GitRepo:
    """A repository opened with dulwich, plus where the caller stands inside it."""

    def __init__(self, repo: Repo, cwd: str) -> None:
        self.repo = repo
        self.root = os.path.realpath(repo.path)
        rel = os.path.relpath(os.path.realpath(cwd), self.root)
        #: the caller's directory relative to the top level ("" at the top), with "/"
        self.prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- revisions ---------------------------------------------------------------------
    def commit(self, rev: str) -> Commit:
        """The commit ``rev`` names (``HEAD~2``, ``main^``, a tag, a short sha, ...)."""
        try:
            obj = parse_object(self.repo, rev.encode())
            while isinstance(obj, Tag):
                obj = self.repo[obj.object[1]]
        except (KeyError, ValueError, NotImplementedError, AssertionError) as exc:
            raise GitError(
                f"unknown revision {rev!r} in {self.root}",
                hint="check the name with `git log --oneline` (branches, tags, HEAD~N, shas)",
            ) from exc
        if not isinstance(obj, Commit):
            raise GitError(
                f"{rev!r} names a {obj.type_name.decode()}, not a commit",
                hint="give a commit, branch or tag",
            )
        return obj

    def commit_id(self, rev: str) -> str:
        return self.commit(rev).id.decode()

    def has_commits(self) -> bool:
        try:
            self.repo.head()
        except KeyError:
            return False
        return True

    def merge_base(self, rev1: str, rev2: str) -> str | None:
        """The best common ancestor of two revisions (None when their histories are disjoint)."""
        bases = find_merge_base(self.repo, [self.commit(rev1).id, self.commit(rev2).id])
        return bases[0].decode() if bases else None

    def parse_range(self, text: str) -> tuple[str, str] | None:
        """``A..B`` -> (A, B) and ``A...B`` -> (merge-base of A and B, B), as ``git diff``
        reads them (an empty side is HEAD); None when ``text`` is not a range."""
        if "..." in text:
            a, b = (x or "HEAD" for x in text.split("...", 1))
            base = self.merge_base(a, b)
            if base is None:
                raise GitError(
                    f"{a} and {b} have no common ancestor ({text})",
                    hint=f"compare them directly: {a} {b}",
                )
            return base, b
        if ".." in text:
            a, b = (x or "HEAD" for x in text.split("..", 1))
            return a, b
        return None

    # -- paths -------------------------------------------------------------------------
    def repo_path(self, path: str) -> str:
        """A path as git's ``REV:path`` reads it: from the top, or from cwd when ``./``/``../``."""
        p = path.replace(os.sep, "/")
        if p.startswith(("./", "../")) or p in (".", ".."):
            p = os.path.normpath(os.path.join(self.prefix, p)).replace(os.sep, "/")
            if p == ".":
                p = ""
            if p.startswith("../"):
                raise GitError(
                    f"{path!r} is outside the repository {self.root}",
                    hint="give a path inside the repository",
                )
        return p.strip("/")

    def blob(self, rev: str, path: str) -> BlobRef:
        """The file ``path`` (top-level relative) holds at ``rev``; LFS pointers parsed."""
        commit = self.commit(rev)
        try:
            mode, sha = tree_lookup_path(
                self.repo.object_store.__getitem__, commit.tree, path.encode()
            )
        except KeyError as exc:
            raise GitError(
                f"path {path!r} does not exist in {rev}",
                hint=f"list the files with `git ls-tree -r --name-only {rev}`",
            ) from exc
        if stat.S_ISDIR(mode):
            raise GitError(
                f"path {path!r} is a directory in {rev}",
                hint="name a checkpoint file (or use it as a directory spec)",
            )
        return self._blob_ref(path, sha, mode)

    def _blob_ref(self, path: str, sha: bytes, mode: int, size: int | None = None) -> BlobRef:
        """The blob's LFS pointer, if it is one; only blobs small enough to be one are read."""
        if size is None:
            size = self.blob_sizes([sha])[sha]
        ptr = None
        if size < _POINTER_MAX:
            obj = self.repo.object_store[ObjectID(sha)]
            ptr = _pointer(obj.as_raw_string()) if isinstance(obj, Blob) else None
        return BlobRef(
            path, sha.decode(), mode, ptr.oid if ptr else None, ptr.size if ptr else None
        )

    def blob_sizes(self, shas: Iterable[bytes]) -> dict[bytes, int]:
        """Sizes of blobs without inflating them (one ``git cat-file --batch-check``)."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        proc = subprocess.run(
            [
                "git",
                f"--git-dir={self.repo.controldir()}",
                "cat-file",
                "--batch-check=%(objectname) %(objectsize)",
            ],
            input=b"".join(sha + b"\n" for sha in wanted),
            capture_output=True,
            check=False,
        )
        sizes: dict[bytes, int] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                sizes[parts[0]] = int(parts[1])
        missing = [sha.decode() for sha in wanted if sha not in sizes]
        if proc.returncode != 0 or missing:
            raise GitError(
                f"cannot read blob(s) {', '.join(m[:12] for m in missing)} in {self.root}",
                hint="check the repository with `git fsck`",
            )
        return sizes

    def lfs_object_path(self, oid: str, size: int, *, display: str) -> str:
        """The LFS store file holding ``oid``; ``LFSObjectMissingError`` when not fetched."""
        storage = self._lfs_dir()
        path = os.path.join(storage, "objects", oid[0:2], oid[2:4], oid)
        try:
            st = os.stat(path)
        except OSError:
            raise LFSObjectMissingError(path=display, oid=oid, size=size) from None
        if st.st_size != size:
            raise LFSObjectMissingError(path=display, oid=oid, size=size)
        return path

    def _lfs_dir(self) -> str:
        common = self.repo.commondir()
        try:
            configured = self.repo.get_config_stack().get((b"lfs",), b"storage")
        except KeyError:
            configured = None
        if configured:
            return os.path.join(common, os.path.expanduser(configured.decode()))
        return LFSStore.from_controldir(common).path

    # -- changed files -----------------------------------------------------------------
    def changes(
        self, rev1: str, rev2: str | None = None, pathspecs: Sequence[str] = ()
    ) -> list[Change]:
        """Checkpoint files added, removed, renamed or modified from ``rev1`` to ``rev2``.

        ``rev2`` None compares with the working tree (tracked files; exact renames only).
        ``pathspecs`` are git-style: relative to the caller's directory, a directory prefix
        or an ``fnmatch`` glob. Ordered by path.
        """
        specs = [self._pathspec(s) for s in pathspecs]
        out = self._worktree_changes(rev1) if rev2 is None else self._tree_changes(rev1, rev2)
        out = [c for c in out if _wanted(c, specs)]
        return sorted(out, key=lambda c: (c.path, c.old_path or ""))

    def renamed_from(
        self, rev1: str, rev2: str | None = None, pathspecs: Sequence[str] = ()
    ) -> dict[str, str]:
        """New path -> old path for every renamed checkpoint between the two sides."""
        return {
            c.new_path: c.old_path
            for c in self.changes(rev1, rev2, pathspecs)
            if c.status == "renamed" and c.new_path and c.old_path
        }

    def _pathspec(self, spec: str) -> str:
        p = spec.replace(os.sep, "/")
        if p.startswith(":/"):  # git's "from the top" magic
            return p[2:].strip("/")
        joined = os.path.normpath(os.path.join(self.prefix, p)).replace(os.sep, "/")
        return "" if joined == "." else joined

    def _tree_changes(self, rev1: str, rev2: str) -> list[Change]:
        store = self.repo.object_store
        t1, t2 = self.commit(rev1).tree, self.commit(rev2).tree
        out: list[Change] = []
        adds: list[tuple[str, bytes]] = []
        deletes: list[tuple[str, bytes]] = []
        for ch in tree_changes(store, t1, t2):
            o, n = ch.old, ch.new
            old = o.path.decode() if o and o.path and o.sha and _regular(o.mode) else None
            new = n.path.decode() if n and n.path and n.sha and _regular(n.mode) else None
            if ch.type == CHANGE_ADD and new and n and n.sha and is_checkpoint_path(new):
                adds.append((new, n.sha))
            elif ch.type == CHANGE_DELETE and old and o and o.sha and is_checkpoint_path(old):
                deletes.append((old, o.sha))
            elif ch.type == CHANGE_MODIFY and old and new and is_checkpoint_path(new):
                out.append(Change("modified", old, new, rev1, rev2))
        sizes = self.blob_sizes(sha for _, sha in deletes + adds) if adds and deletes else {}
        for old_path, new_path, score in _pair_renames(store, deletes, adds, sizes):
            out.append(Change("renamed", old_path, new_path, rev1, rev2, score))
        renamed_old = {c.old_path for c in out if c.status == "renamed"}
        renamed_new = {c.new_path for c in out if c.status == "renamed"}
        out += [Change("added", None, p, rev1, rev2) for p, _ in adds if p not in renamed_new]
        out += [Change("removed", p, None, rev1, rev2) for p, _ in deletes if p not in renamed_old]
        return out

    def _worktree_changes(self, rev1: str) -> list[Change]:
        old = {
            p: ref
            for p, ref in self._tree_files(self.commit(rev1).tree).items()
            if is_checkpoint_path(p)
        }
        index = self.repo.open_index()
        tracked: dict[str, Any] = {}
        for raw, entry in index.items():
            p = raw.decode()
            if is_checkpoint_path(p) and isinstance(entry, IndexEntry):
                tracked[p] = entry
        added: list[str] = []
        removed: list[str] = []
        out: list[Change] = []
        for p in sorted(set(old) | set(tracked)):
            disk = os.path.join(self.root, *p.split("/"))
            on_disk = p in tracked and os.path.isfile(disk)
            if p in old and not on_disk:
                removed.append(p)
            elif p not in old and on_disk:
                added.append(p)
            elif p in old and on_disk and not self._same_as_disk(old[p], disk, tracked[p]):
                out.append(Change("modified", p, p, rev1, None))
        # Exact renames: a removed file whose content is an added file's (what git's
        # rename detection reports at 100%; partial similarity would need both contents).
        keys = {p: _content_keys(os.path.join(self.root, *p.split("/"))) for p in added}
        for r in removed:
            ref = old[r]
            key = ref.lfs_oid or ref.sha
            match = next((a for a in added if key in keys[a]), None)
            if match is not None:
                added.remove(match)
                out.append(Change("renamed", r, match, rev1, None, 100))
            else:
                out.append(Change("removed", r, None, rev1, None))
        out.extend(Change("added", None, a, rev1, None) for a in added)
        return out

    def _index_mtime_ns(self) -> int:
        try:
            return os.stat(self.repo.index_path()).st_mtime_ns
        except OSError:
            return 0

    def _tree_files(self, tree_id: bytes) -> dict[str, BlobRef]:
        entries: list[tuple[str, bytes, int]] = []
        stack: list[tuple[bytes, str]] = [(tree_id, "")]
        while stack:
            tid, base = stack.pop()
            for item in _tree(self, tid).items():
                name = base + item.path.decode()
                if stat.S_ISDIR(item.mode):
                    stack.append((item.sha, name + "/"))
                elif _regular(item.mode) and is_checkpoint_path(name):
                    entries.append((name, item.sha, item.mode))
        sizes = self.blob_sizes(sha for _, sha, _ in entries)
        return {name: self._blob_ref(name, sha, mode, sizes[sha]) for name, sha, mode in entries}

    def _same_as_disk(self, ref: BlobRef, disk: str, entry: Any) -> bool:
        st = os.stat(disk)
        # git's own shortcut: the index entry's stat data still matches the file and the
        # index holds the tree's blob, so the content is the tree's.
        if entry.sha.decode() == ref.sha and _stat_matches(entry, st, self._index_mtime_ns()):
            return True
        if ref.lfs_oid is not None:
            if st.st_size != ref.lfs_size:
                ptr = _read_pointer(disk) if st.st_size < _POINTER_MAX else None
                return ptr is not None and ptr.oid == ref.lfs_oid
            return ref.lfs_oid in _content_keys(disk)
        return ref.sha in _content_keys(disk)


def changed_checkpoints(
    rev1: str, rev2: str | None = None, pathspecs: Sequence[str] = (), *, cwd: str | None = None
) -> list[Change]:
    """``GitRepo.changes`` for the repository containing ``cwd`` (default: the current dir)."""
    with open_repo(cwd) as repo:
        return repo.changes(rev1, rev2, pathspecs)


def merge_base(rev1: str, rev2: str, *, cwd: str | None = None) -> str | None:
    """The merge-base commit id of two revisions (None when unrelated)."""
    with open_repo(cwd) as repo:
        return repo.merge_base(rev1, rev2)


def open_repo(start: str | os.PathLike[str] | None = None) -> GitRepo:
    """The repository containing ``start`` (default: the current directory)."""
    cwd = os.fspath(start) if start is not None else os.getcwd()
    try:
        repo = Repo.discover(cwd)
    except NotGitRepository:
        raise GitError(
            f"{cwd} is not inside a git repository",
            hint="run the command from a git checkout (or `git init` one)",
        ) from None
    return GitRepo(repo, cwd)


# -- opening checkpoints at revisions -------------------------------------------------------


def split_spec(spec: str) -> tuple[str, str] | None:
    """``("HEAD~2", "ckpt/m.safetensors")`` for ``"HEAD~2:ckpt/m.safetensors"``; None otherwise.

    An existing filesystem path is never a spec, whatever it contains. An empty revision
    (``:path``) means the index, as in git.
    """
    if os.path.exists(spec) or ":" not in spec:
        return None
    rev, path = spec.split(":", 1)
    return rev, path


def is_rev_spec(arg: str) -> bool:
    """Whether ``arg`` reads as ``REV:path`` (and is not an existing file or directory)."""
    return split_spec(arg) is not None


def open_spec(spec: str, *, cwd: str | None = None, **open_kwargs: Any) -> Checkpoint:
    """Open ``REV:path`` from git history, or ``spec`` itself when it is a plain path.

    The returned checkpoint's ``path`` is ``spec``; closing it removes any temporary copy.
    ``open_kwargs`` go to the reader (``format=``, ``unsafe_pickle=``).
    """
    parts = split_spec(spec)
    if parts is None:
        return open_worktree_file(spec, cwd=cwd, **open_kwargs)
    rev, path = parts
    with open_repo(cwd) as repo:
        return open_revision(repo, rev, repo.repo_path(path), display=spec, **open_kwargs)


def open_revision(
    repo: GitRepo, rev: str | None, path: str, *, display: str | None = None, **open_kwargs: Any
) -> Checkpoint:
    """Open ``path`` (top-level relative) as it is at ``rev`` (``""``: the index; None: disk).

    An LFS object is opened where it lies in the store. A plain blob is written to a
    temporary file first; a directory (a HuggingFace checkpoint folder) is laid out in a
    temporary directory with LFS objects linked, not copied.
    """
    if rev is None:
        return open_worktree_file(
            os.path.join(repo.root, *path.split("/")), display=display or path, **open_kwargs
        )
    name = display or f"{rev}:{path}"
    mode, sha = _lookup(repo, rev, path)
    if not stat.S_ISDIR(mode):
        ref = repo._blob_ref(path, sha, mode)
        if ref.lfs_oid is not None and ref.lfs_size is not None:
            obj = repo.lfs_object_path(ref.lfs_oid, ref.lfs_size, display=name)
            return _open_file(obj, name, path, **open_kwargs)
    tmp = tempfile.mkdtemp(prefix="model-diff-rev-")
    try:
        target = os.path.join(tmp, os.path.basename(path) or "checkout")
        if stat.S_ISDIR(mode):
            _write_tree(repo, sha, target, name)
            inner = _relabel(lambda: _open_checkpoint(target, **open_kwargs), target, tmp, name)
        else:
            _write_blob(repo, repo._blob_ref(path, sha, mode), target, name)
            inner = _open_file(target, name, path, **open_kwargs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finalizers: list[weakref.finalize] = []

    def remove_tmp() -> None:
        finalizers[0]()

    ckpt = inner.relabeled(name, closers=[remove_tmp, inner.close])  # closers run last-first
    # The directory goes when the checkpoint closes, or when it is collected unclosed.
    finalizers.append(weakref.finalize(ckpt, shutil.rmtree, tmp, ignore_errors=True))
    return ckpt


def open_worktree_file(
    path: str, *, cwd: str | None = None, display: str | None = None, **open_kwargs: Any
) -> Checkpoint:
    """Open a file or folder on disk, named ``display`` in messages and reports.

    A Git LFS pointer left in a checkout (or handed over by a driver) is resolved from the
    local LFS store by the reader.
    """
    full = os.path.join(cwd, path) if cwd else path
    if display is None or os.path.isdir(full):
        return _open_checkpoint(full, **open_kwargs)
    return _open_file(full, display, display, **open_kwargs)


def blob_at(repo: GitRepo, rev: str, path: str) -> BlobRef | None:
    """The file ``path`` at ``rev``, or None when it is absent there or ``rev`` has no commit.

    For hooks: ``blob_at(repo, "HEAD", path) is None`` means "new file, no base to compare".
    """
    if rev == "HEAD" and not repo.has_commits():
        return None
    try:
        return repo.blob(rev, path)
    except GitError:
        if rev != "HEAD":
            repo.commit(rev)  # an unknown revision is still an error
        return None


def read_blob_bytes(repo: GitRepo, rev: str, path: str) -> bytes:
    """The raw blob (an LFS pointer stays a pointer): for small files and tests only."""
    ref = repo.blob(rev, path)
    return repo.repo.object_store[ObjectID(ref.sha.encode())].as_raw_string()


# -- helpers --------------------------------------------------------------------------------


def _open_checkpoint(path: str, **kw: Any) -> Checkpoint:
    # Imported when a checkpoint is opened, so listing changes never loads the readers.
    from model_diff.formats import open_checkpoint

    return open_checkpoint(path, **kw)


def _open_file(path: str, label: str, name: str, **kw: Any) -> Checkpoint:
    """Open one file; ``label`` names it in messages, ``name``'s extension helps detection."""
    from model_diff.formats import open_file

    if not os.path.exists(path):
        return _open_checkpoint(path, **kw)  # the reader's own "no such file" error
    return open_file(path, label=label, name=name, **kw)


def _relabel(opener: Any, target: str, tmp: str, name: str) -> Checkpoint:
    """Run ``opener``; errors name what the user asked for, never our temporary directory."""
    try:
        ckpt: Checkpoint = opener()
    except ModelDiffError as exc:
        if exc.path and exc.path.startswith(tmp):
            exc.path = name + exc.path[len(target) :]
        exc.message = exc.message.replace(target, name).replace(tmp, name)
        raise
    return ckpt


def _tree(repo: GitRepo, tree_id: bytes) -> Tree:
    tree = repo.repo.object_store[ObjectID(tree_id)]
    if not isinstance(tree, Tree):
        raise GitError(
            f"object {tree_id.decode()} is not a tree",
            hint="the repository may be corrupt; run `git fsck`",
        )
    return tree


def _lookup(repo: GitRepo, rev: str, path: str) -> tuple[int, bytes]:
    """(mode, sha) of ``path`` at ``rev``; ``rev == ""`` reads the index, as git's ``:path``."""
    if rev == "":
        try:
            entry: object = repo.repo.open_index()[path.encode()]
        except KeyError:
            entry = None
        if not isinstance(entry, IndexEntry):
            raise GitError(
                f"path {path!r} is not in the index",
                hint="stage it with `git add` or give a revision (HEAD:path)",
            )
        return entry.mode, entry.sha
    commit = repo.commit(rev)
    if path == "":
        return stat.S_IFDIR, commit.tree
    try:
        mode, sha = tree_lookup_path(repo.repo.object_store.__getitem__, commit.tree, path.encode())
    except KeyError:
        raise GitError(
            f"path {path!r} does not exist in {rev}",
            hint=f"list the files with `git ls-tree -r --name-only {rev}`",
        ) from None
    return mode, sha


def _write_tree(repo: GitRepo, tree_id: bytes, dest: str, name: str) -> None:
    os.makedirs(dest, exist_ok=True)
    for item in _tree(repo, tree_id).items():
        child = os.path.join(dest, item.path.decode())
        if stat.S_ISDIR(item.mode):
            _write_tree(repo, item.sha, child, name)
        elif _regular(item.mode):
            ref = repo._blob_ref(item.path.decode(), item.sha, item.mode)
            _write_blob(repo, ref, child, f"{name}/{item.path.decode()}")


def _write_blob(repo: GitRepo, ref: BlobRef, dest: str, name: str) -> None:
    if ref.lfs_oid is not None and ref.lfs_size is not None:
        os.symlink(repo.lfs_object_path(ref.lfs_oid, ref.lfs_size, display=name), dest)
        return
    # `git cat-file` streams the blob into the file; dulwich would inflate all of it in memory.
    with open(dest, "wb") as f:
        proc = subprocess.run(
            ["git", f"--git-dir={repo.repo.controldir()}", "cat-file", "blob", ref.sha],
            stdout=f,
            stderr=subprocess.PIPE,
            check=False,
        )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(
            f"cannot read {name} (blob {ref.sha[:12]}): "
            f"{detail[-1] if detail else 'git cat-file failed'}",
            hint="check the repository with `git fsck`",
        )


#: git's default rename threshold (``-M50%``) and a cap on the pairs scored, like
#: ``diff.renameLimit``: past it only exact renames are found.
_RENAME_THRESHOLD = 50
_RENAME_MAX_PAIRS = 200 * 200
_RENAME_MAX_BYTES = 32 << 20


def _pair_renames(
    store: Any,
    deletes: list[tuple[str, bytes]],
    adds: list[tuple[str, bytes]],
    sizes: dict[bytes, int],
) -> list[tuple[str, str, int]]:
    """(old path, new path, similarity %) for deleted/added checkpoint files, as ``git diff -M``.

    Only deleted and added checkpoint files are candidates (never modified ones: dulwich's own
    detector scores every modified blob as a copy source, which reads and hashes whole
    multi-GB checkpoints for nothing). Identical blobs pair first at 100%; the rest by
    dulwich's similarity score, best first, when at least 50%; blobs over 32 MiB (which dulwich
    would inflate in memory) or whose sizes differ by more than 2x are only paired when
    identical. For LFS files the blobs are the pointers, as for git: a renamed and modified LFS
    file is a removal plus an addition.
    """
    pairs: list[tuple[str, str, int]] = []
    by_sha: dict[bytes, list[str]] = {}
    for path, sha in adds:
        by_sha.setdefault(sha, []).append(path)
    left: list[tuple[str, bytes]] = []
    for path, sha in deletes:
        if by_sha.get(sha):
            pairs.append((path, by_sha[sha].pop(0), 100))
        else:
            left.append((path, sha))
    taken = {new for _, new, _ in pairs}
    right = [(p, sha) for p, sha in adds if p not in taken]
    if not left or not right or len(left) * len(right) > _RENAME_MAX_PAIRS:
        return pairs

    def comparable(a: bytes, b: bytes) -> bool:
        sa, sb = sizes[a], sizes[b]
        return max(sa, sb) <= _RENAME_MAX_BYTES and 2 * min(sa, sb) >= max(sa, sb)

    cache: dict[Any, Any] = {}
    scored = sorted(
        (
            (_similarity_score(store[o_sha], store[n_sha], block_cache=cache), o, n)
            for o, o_sha in left
            for n, n_sha in right
            if comparable(o_sha, n_sha)
        ),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    used_old: set[str] = set()
    used_new: set[str] = set()
    for score, o, n in scored:
        if score >= _RENAME_THRESHOLD and o not in used_old and n not in used_new:
            used_old.add(o)
            used_new.add(n)
            pairs.append((o, n, score))
    return pairs


def _pointer(data: bytes) -> LFSPointer | None:
    if len(data) >= _POINTER_MAX or not data.startswith(b"version https://git-lfs"):
        return None
    ptr = LFSPointer.from_bytes(data)
    return ptr if ptr is not None and ptr.is_valid_oid() else None


def _read_pointer(path: str) -> LFSPointer | None:
    try:
        with open(path, "rb") as f:
            head = f.read(_POINTER_MAX)
    except OSError:
        return None
    return _pointer(head)


def _content_keys(path: str) -> set[str]:
    """The file's LFS oid (sha256) and git blob id (sha1): what a tree could record for it."""
    size = os.path.getsize(path)
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)  # git's blob id
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    keys = {sha256.hexdigest(), sha1.hexdigest()}
    if size < _POINTER_MAX:
        ptr = _read_pointer(path)
        if ptr is not None:
            keys.add(ptr.oid)
    return keys


def _stat_matches(entry: Any, st: os.stat_result, index_mtime_ns: int) -> bool:
    mtime = entry.mtime
    sec, nsec = mtime if isinstance(mtime, tuple) else (int(mtime), 0)
    entry_ns = sec * 1_000_000_000 + nsec
    # "Racily clean": a file modified in the same tick the index was written may have
    # changed without its stat data showing it; git rehashes those, and so do we.
    if entry_ns >= index_mtime_ns:
        return False
    return entry.size == (st.st_size & 0xFFFFFFFF) and entry_ns == st.st_mtime_ns


def _regular(mode: int | None) -> bool:
    return mode is not None and stat.S_ISREG(mode)


def _wanted(change: Change, specs: Iterable[str]) -> bool:
    specs = list(specs)
    if not specs:
        return True
    paths = [p for p in (change.old_path, change.new_path) if p]
    return any(_match(p, s) for p in paths for s in specs)


def _match(path: str, spec: str) -> bool:
    if spec == "":
        return True
    if any(ch in spec for ch in "*?["):
        return fnmatch.fnmatchcase(path, spec)
    return path == spec or path.startswith(spec.rstrip("/") + "/")
