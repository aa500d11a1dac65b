"""The one module that talks to git: the repository, revisions, changes, blobs and config.

Everything model-diff asks git goes through here, answered by the real ``git`` executable
(argument lists, no shell) in a scrubbed environment (``git_env``): external diff drivers,
textconv, pagers and optional index locks off, so a query never runs a driver or contends
with the ``git commit`` that runs a hook.

- ``Repo.discover()`` finds the repository once (top level, git dir, common dir, prefix).
- ``Repo.resolve(rev)`` accepts any revision git accepts (short shas, tags, ``HEAD~2``,
  ``@{-1}``, ``@{u}``) plus ``A...B`` for the merge base of A and B.
- ``Repo.changes(old, new)`` lists the checkpoints changed between two commits, a commit and
  the index (``INDEX``) or the working tree (``WORKTREE``), as one ``Change`` type: git's own
  rename detection, then checkpoint folders made one unit, then ``pair_replaced``.
- ``Repo.history(path, rev_range)`` lists the commits that changed a checkpoint file or folder,
  oldest first (``model-diff timeline --git``).
- ``Repo.open(side, path)`` / ``open_revision(rev, path)`` open a checkpoint file or folder as
  it is at a revision; Git LFS pointers are parsed and resolved by ``model_diff.formats.lfs``.

Paths are ``str`` decoded with ``os.fsdecode`` (undecodable bytes kept as surrogates, so they
go back to git and the file system unchanged); ``display_path`` is the form to show.
Why the git CLI and not dulwich: docs/git.md, measured by ``bench/gitbackend.py``.

This module must not print or exit, and never reads a large blob into memory: plain blobs
are streamed into files by ``git cat-file``, LFS objects are opened where they lie. Errors
are ``GitError`` (not a repository, unknown revision, path not in a tree) and the readers'
``CheckpointError`` / ``LFSObjectMissingError``, each naming the fix.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Literal

from model_diff.checkpoint import Checkpoint
from model_diff.errors import GitError, ModelDiffError
from model_diff.formats import folder_file, hf, is_checkpoint_name, lfs

from .local import open_any, open_local, open_named

Status = Literal["added", "removed", "modified", "renamed"]

#: Sides of a comparison besides a commit: the index and the working tree.
INDEX = ":"
WORKTREE = None
Side = str | None

#: Variables that would make a git query run a driver or print extra output.
_SCRUBBED = ("GIT_EXTERNAL_DIFF", "GIT_DIFF_OPTS", "GIT_TRACE", "GIT_TRACE_PERFORMANCE")


def git_env() -> dict[str, str]:
    """The environment git runs in: no external diff, no pager, no optional index lock
    (a hook's ``git diff`` must not take ``index.lock`` from the commit that runs it)."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat")
    return env


def run(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    input: bytes | None = None,
    stdout: Any = subprocess.PIPE,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS``; a failure (when ``check``) is a ``GitError`` with git's last line."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=git_env(),
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH", hint="install git") from None
    if check and proc.returncode != 0:
        raise GitError(f"`git {' '.join(args[:2])}` failed: {_last_line(proc)}")
    return proc


def _last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def display_path(path: str) -> str:
    """A path as shown to people: undecodable bytes as ``\\xNN`` (never a crash, never
    a lone surrogate in JSON); everything else as it is."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


# -- config (any scope; inside or outside a repository) --------------------------------------


def config_get(
    scope: Sequence[str], key: str, cwd: str | os.PathLike[str] | None = None
) -> str | None:
    """One value in a scope (``["--local"]``, ``["--global"]``, ``[]`` = effective)."""
    proc = run(["config", *scope, "--get", key], cwd=cwd, check=False)
    if proc.returncode == 1:
        return None
    if proc.returncode != 0:
        raise GitError(f"`git config {' '.join(scope)} --get {key}` failed: {_last_line(proc)}")
    return os.fsdecode(proc.stdout.removesuffix(b"\n"))


def config_keys(
    scope: Sequence[str], key_regex: str, cwd: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Keys matching a regex in a scope, with their (last) values."""
    proc = run(["config", *scope, "-z", "--get-regexp", key_regex], cwd=cwd, check=False)
    if proc.returncode == 1:
        return {}
    if proc.returncode != 0:
        raise GitError(f"`git config --get-regexp {key_regex}` failed: {_last_line(proc)}")
    out: dict[str, str] = {}
    for rec in os.fsdecode(proc.stdout).split("\0"):
        if rec:
            key, _, value = rec.partition("\n")
            out[key] = value
    return out


def config_set(
    scope: Sequence[str], key: str, value: str, cwd: str | os.PathLike[str] | None = None
) -> None:
    run(["config", *scope, key, value], cwd=cwd)


def config_unset(scope: Sequence[str], key: str, cwd: str | os.PathLike[str] | None = None) -> None:
    proc = run(["config", *scope, "--unset-all", key], cwd=cwd, check=False)
    if proc.returncode not in (0, 5):  # 5: the key was not there
        raise GitError(f"`git config --unset-all {key}` failed: {_last_line(proc)}")


def config_remove_section(
    scope: Sequence[str], section: str, cwd: str | os.PathLike[str] | None = None
) -> None:
    run(["config", *scope, "--remove-section", section], cwd=cwd, check=False)


# -- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One changed checkpoint (a file, or a model folder as one unit) between two sides.

    ``similarity`` is git's rename score in percent (100: identical content); None for a
    checkpoint paired by ``pair_replaced`` (a replaced checkpoint, content not compared).
    ``parts`` are the changed files inside a folder unit. Paths are top-level relative.
    """

    status: Status
    old_path: str | None
    new_path: str | None
    similarity: int | None = None
    folder: bool = False
    parts: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """The path the change is known by: the new one, or the old one when removed."""
        return self.new_path or self.old_path or ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("old_path", "new_path"):
            d[key] = display_path(d[key]) if d[key] is not None else None
        d["parts"] = [display_path(p) for p in self.parts]
        return d


_DIGITS = re.compile(r"[0-9]+")


def _replacement_key(path: str, folder: bool) -> tuple[str, str]:
    """(directory, name with every run of digits as ``#``, lower-case) of a checkpoint."""
    directory, name = posixpath.split(path)
    return directory, _DIGITS.sub("#", name.lower()) + ("/" if folder else "")


def pair_replaced(changes: Sequence[Change]) -> list[Change]:
    """The replaced-checkpoint rule: pair what git leaves as a removal plus an addition.

    A training run that saves ``ckpt/step_2000.safetensors`` and deletes
    ``ckpt/step_1000.safetensors`` replaced one checkpoint; git's content-based rename
    detection never pairs them (all the weights differ; with LFS the blobs are pointers).
    Rule: a removed and an added checkpoint are one ``renamed`` change (``similarity``
    None) when they are in the same directory, their names differ only in their numbers
    (letter case aside: ``step_1000.safetensors`` / ``step_2000.SAFETENSORS``,
    ``checkpoint-500/`` / ``checkpoint-1000/`` folders), and no other removed or added
    checkpoint there has that name shape. Everything else is left as it is, in order.
    """
    removed: dict[tuple[str, str], list[int]] = {}
    added: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(changes):
        if c.status == "removed" and c.old_path is not None:
            removed.setdefault(_replacement_key(c.old_path, c.folder), []).append(i)
        elif c.status == "added" and c.new_path is not None:
            added.setdefault(_replacement_key(c.new_path, c.folder), []).append(i)
    paired: dict[int, Change] = {}
    drop: set[int] = set()
    for key, olds in removed.items():
        news = added.get(key, [])
        if len(olds) == 1 and len(news) == 1:
            old, new = changes[olds[0]], changes[news[0]]
            paired[news[0]] = replace(
                new, status="renamed", old_path=old.old_path, parts=old.parts + new.parts
            )
            drop.add(olds[0])
    return [paired.get(i, c) for i, c in enumerate(changes) if i not in drop]


@dataclass(frozen=True)
class _FileChange:
    status: str  # git's letter: A D M R T (C is never asked for)
    old_path: str | None
    new_path: str | None
    similarity: int | None


def _parse_raw(out: bytes) -> list[_FileChange]:
    """``git diff --raw -z`` records: ``:modes shas STATUS\\0path\\0[path\\0]``."""
    fields = out.split(b"\0")
    changes: list[_FileChange] = []
    i = 0
    while i + 1 < len(fields) and fields[i].startswith(b":"):
        meta = fields[i].split()
        letter = meta[-1][:1].decode()
        score = meta[-1][1:]
        if letter in "RC":
            old, new = os.fsdecode(fields[i + 1]), os.fsdecode(fields[i + 2])
            changes.append(_FileChange(letter, old, new, int(score) if score else None))
            i += 3
            continue
        path = os.fsdecode(fields[i + 1])
        changes.append(
            _FileChange(
                letter, None if letter == "A" else path, None if letter == "D" else path, None
            )
        )
        i += 2
    return changes


@dataclass(frozen=True)
class DiffSides:
    """Two sides to compare: each as the user named it and as a commit id (``new`` None and
    ``new_id`` ``WORKTREE``: the working tree), the pathspecs left over, and a title."""

    old: str
    old_id: str
    new: str | None
    new_id: Side
    pathspecs: list[str]
    title: str


@dataclass(frozen=True)
class Revision:
    """One commit in a path's history: ``commit`` (full id), ``short`` (git's abbreviation),
    ``subject`` (first line of the message), ``path`` (top-level relative) and ``present``
    (False: the commit deleted the path)."""

    commit: str
    short: str
    subject: str
    path: str
    present: bool


# -- the repository --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A file of a tree or the index: its path (top-level relative), mode, blob id, size."""

    path: str
    mode: str
    sha: str
    size: int


class Repo:
    """A git work tree: where it is, and every question model-diff asks about it."""

    def __init__(self, top: str, git_dir: str, common_dir: str, prefix: str) -> None:
        self.top = top
        self.git_dir = git_dir
        self.common_dir = common_dir
        #: the caller's directory relative to the top level ("" at the top), with "/"
        self.prefix = prefix
        self._empty_tree: str | None = None

    @classmethod
    def find(cls, start: str | os.PathLike[str] | None = None) -> Repo | None:
        """The work tree around ``start`` (default: the current directory), or None."""
        cwd = os.fspath(start) if start is not None else os.getcwd()
        proc = run(
            [
                "rev-parse",
                "--show-toplevel",
                "--absolute-git-dir",
                "--git-common-dir",
                "--show-prefix",
            ],
            cwd=cwd,
            check=False,
        )
        lines = os.fsdecode(proc.stdout).split("\n")
        if proc.returncode != 0 or len(lines) < 4 or not lines[0]:
            return None
        top, git_dir, common, prefix = lines[:4]
        return cls(top, git_dir, os.path.normpath(os.path.join(cwd, common)), prefix)

    @classmethod
    def discover(cls, start: str | os.PathLike[str] | None = None) -> Repo:
        """The work tree around ``start``; ``GitError`` outside one (or in a bare repository)."""
        repo = cls.find(start)
        if repo is None:
            where = os.path.abspath(os.fspath(start) if start is not None else os.getcwd())
            raise GitError(
                f"{where} is not inside a git work tree",
                hint="run the command inside a git repository's checkout (or `git init` one)",
            )
        return repo

    def git(self, *args: str, input: bytes | None = None, stdout: Any = subprocess.PIPE) -> bytes:
        """``git ARGS`` at the top level; stdout (``GitError`` on failure)."""
        return run(args, cwd=self.top, input=input, stdout=stdout).stdout

    # -- revisions -------------------------------------------------------------------------
    def try_resolve(self, rev: str) -> str | None:
        """The commit id ``rev`` names, or None. ``A...B`` names the merge base of A and B."""
        if "..." in rev:
            a, b = (x or "HEAD" for x in rev.split("...", 1))
            ids = self.try_resolve(a), self.try_resolve(b)
            return self.merge_base(*ids) if ids[0] and ids[1] else None  # type: ignore[arg-type]
        proc = run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
            cwd=self.top,
            check=False,
        )
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def resolve(self, rev: str) -> str:
        """The commit id of any revision git accepts; ``GitError`` naming the fix."""
        sha = self.try_resolve(rev)
        if sha is None:
            raise GitError(
                f"unknown revision {rev!r} in {self.top}",
                hint="check the name with `git log --oneline --all`; a commit not fetched "
                f"yet: git fetch --no-tags --depth=1 origin {rev}",
            )
        return sha

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two revisions (None when their histories are disjoint)."""
        proc = run(["merge-base", self.resolve(a), self.resolve(b)], cwd=self.top, check=False)
        out = proc.stdout.decode().split()
        return out[0] if proc.returncode == 0 and out else None

    def empty_tree(self) -> str:
        """The id of the empty tree (the base of an initial commit), in this repo's hash."""
        if self._empty_tree is None:
            out = self.git("hash-object", "-t", "tree", "--stdin", input=b"")
            self._empty_tree = out.decode().strip()
        return self._empty_tree

    def diff_sides(self, args: Sequence[str], pathspecs: Sequence[str] = ()) -> DiffSides:
        """``model-diff diff``'s arguments: which two sides, and which paths.

        ``A..B`` and ``A...B`` (old side A, or the merge base of A and B) read as in
        ``git diff``; ``REV1 REV2`` when REV2 names a commit and no file, else the working
        tree is the new side and REV2 and what follows are pathspecs. An existing file is
        never read as a revision.
        """
        first, rest = args[0], list(args[1:])
        if not os.path.exists(first) and ".." in first:
            three = "..." in first
            a, b = (x or "HEAD" for x in first.split("..." if three else "..", 1))
            base = self.merge_base(a, b) if three else self.resolve(a)
            if base is None:
                raise GitError(
                    f"{a} and {b} have no common ancestor ({first})",
                    hint=f"compare them directly: {a} {b}",
                )
            title = f"model-diff {first}"
            old = base if three else a
            return DiffSides(old, base, b, self.resolve(b), rest + list(pathspecs), title)
        old_id = self.resolve(first)
        if rest and not os.path.exists(rest[0]):
            new_id = self.try_resolve(rest[0])
            if new_id is not None:
                title = f"model-diff {first}..{rest[0]}"
                return DiffSides(first, old_id, rest[0], new_id, rest[1:] + list(pathspecs), title)
            if not pathspecs and len(rest) == 1:
                self.resolve(rest[0])  # `diff A B`, B neither a revision nor a path: say so
        title = f"model-diff {first} vs working tree"
        return DiffSides(first, old_id, None, WORKTREE, rest + list(pathspecs), title)

    def attribute(self, path: str, name: str) -> str:
        """The value git resolves for attribute ``name`` of ``path`` (top-level relative):
        ``unspecified``, ``set``, ``unset`` or the value (``git check-attr``)."""
        out = self.git("check-attr", "-z", name, "--", path)
        fields = os.fsdecode(out).split("\0")
        return fields[2] if len(fields) > 2 else "unspecified"

    # -- history ---------------------------------------------------------------------------
    def history(self, path: str, rev_range: str | None = None) -> list[Revision]:
        """Every commit that changed ``path`` (a file or a folder, relative to the caller's
        directory as ``git log -- PATH`` reads it), oldest first.

        ``rev_range`` is what ``git log`` accepts (``A..B``, ``v1.0..``, ``main``; default
        ``HEAD``); history simplification is git's default, parents before children
        (``--topo-order``). Renames are not followed: a renamed file's history starts at the
        rename. ``GitError`` for an unknown revision or range.
        """
        spec = self._pathspec(path)
        if not spec:
            raise GitError(
                "timeline --git needs the path of one checkpoint file or folder",
                hint="model-diff timeline --git [REV_RANGE] -- PATH",
            )
        rng = rev_range or "HEAD"
        proc = run(
            [
                "--literal-pathspecs",
                "log",
                "--topo-order",
                "--reverse",
                "--no-color",
                "--format=%H%x00%h%x00%s",
                "--end-of-options",
                rng,
                "--",
                spec,
            ],
            cwd=self.top,
            check=False,
        )
        if proc.returncode != 0:
            raise GitError(
                f"unknown revision or range {rng!r} in {self.top}: {_last_line(proc)}",
                hint="check it with `git log --oneline " + rng + "`",
            )
        commits = []
        # split on "\n" only: str.splitlines() also splits on separators a subject may hold
        for line in proc.stdout.decode("utf-8", errors="replace").split("\n"):
            sha, short, subject = [*line.split("\0", 2), "", ""][:3]
            if sha:
                commits.append((sha, short, subject))
        if not commits:
            return []
        out = self.git(
            "cat-file",
            "--batch-check=%(objecttype)",
            input=b"".join(f"{sha}:".encode() + os.fsencode(spec) + b"\n" for sha, _, _ in commits),
        )
        kinds = out.decode(errors="replace").split("\n")[: len(commits)]
        return [
            Revision(sha, short, subject, spec, kind in ("blob", "tree"))
            for (sha, short, subject), kind in zip(commits, kinds, strict=True)
        ]

    # -- paths -----------------------------------------------------------------------------
    def repo_path(self, path: str) -> str:
        """A path as git's ``REV:path`` reads it: from the top, or from the caller's
        directory when it starts with ``./`` or ``../``."""
        p = path.replace(os.sep, "/")
        if p.startswith(("./", "../")) or p in (".", ".."):
            p = posixpath.normpath(posixpath.join(self.prefix, p))
            if p == ".":
                p = ""
            if p == ".." or p.startswith("../"):
                raise GitError(
                    f"{display_path(path)!r} is outside the repository {self.top}",
                    hint="give a path inside the repository",
                )
        return p.strip("/")

    def relative(self, path: str, cwd: str | os.PathLike[str]) -> str | None:
        """``path`` (relative to ``cwd`` or absolute) relative to the top; None outside."""
        full = os.path.join(os.fspath(cwd), path)
        # Resolve the parent only: the file itself may be a symlink we must not follow.
        parent = os.path.realpath(os.path.dirname(full) or ".")
        rel = os.path.relpath(
            os.path.join(parent, os.path.basename(full)), os.path.realpath(self.top)
        )
        if rel == ".." or rel.startswith(".." + os.sep):
            return None
        return "" if rel == "." else rel.replace(os.sep, "/")

    def _pathspec(self, spec: str) -> str:
        p = spec.replace(os.sep, "/")
        if p.startswith(":/"):  # git's "from the top" magic
            return p[2:].strip("/")
        joined = posixpath.normpath(posixpath.join(self.prefix, p))
        return "" if joined == "." else joined

    # -- what changed ----------------------------------------------------------------------
    def changes(
        self, old: str, new: Side = WORKTREE, pathspecs: Sequence[str] = ()
    ) -> list[Change]:
        """Checkpoints added, removed, renamed or modified from ``old`` to ``new``.

        ``old`` is a revision (or a tree id); ``new`` a revision, ``INDEX`` or ``WORKTREE``
        (tracked files). Files come from ``git diff -M`` (git's rename detection); a file
        inside a model folder (a sharded index or an adapter, ``formats.is_folder_marker``)
        makes the folder one change; then ``pair_replaced``. ``pathspecs`` (relative to the
        caller's directory; a directory, a file or an ``fnmatch`` glob) keep a change when
        any of its paths matches. Ordered by path.
        """
        old_id = old if old == self.empty_tree() else self.resolve(old)
        args = ["diff", "--raw", "-z", "--no-abbrev", "-M", "--no-ext-diff", "--no-textconv"]
        if new == INDEX:
            args += ["--cached", old_id]
        elif new is WORKTREE:
            args.append(old_id)
        else:
            args += [old_id, self.resolve(new)]
        files = _parse_raw(self.git(*args, "--"))
        out = pair_replaced(self._units(files, old_id, new))
        specs = [self._pathspec(s) for s in pathspecs]
        if specs:
            out = [c for c in out if any(_match(p, s) for p in _paths(c) for s in specs)]
        return sorted(out, key=lambda c: (c.path, c.old_path or ""))

    def _units(self, files: list[_FileChange], old: str, new: Side) -> list[Change]:
        dirs = sorted({posixpath.dirname(p) for f in files for p in (f.old_path, f.new_path) if p})
        markers = [f"{d}/{m}" for d in dirs if d for m in hf.FOLDER_MARKERS]
        found = self.exists(old, markers) | self.exists(new, markers) if markers else set()
        folders = {posixpath.dirname(m) for m in found}

        def unit(path: str | None) -> str | None:
            if path is None:
                return None
            d = posixpath.dirname(path)
            return d if d in folders and folder_file(posixpath.basename(path)) else None

        def checkpoint(path: str | None, in_unit: str | None) -> str | None:
            return path if in_unit is None and path and is_checkpoint_name(path) else None

        out: list[Change] = []
        touched: dict[str, set[str]] = {}
        for f in files:
            ou, nu = unit(f.old_path), unit(f.new_path)
            for u, p in ((ou, f.old_path), (nu, f.new_path)):
                if u is not None and p is not None:
                    touched.setdefault(u, set()).add(p)
            old_file, new_file = checkpoint(f.old_path, ou), checkpoint(f.new_path, nu)
            if old_file and new_file:
                renamed = f.status == "R"
                status: Status = "renamed" if renamed else "modified"
                out.append(Change(status, old_file, new_file, f.similarity if renamed else None))
            elif old_file:
                out.append(Change("removed", old_file, None))
            elif new_file:
                out.append(Change("added", None, new_file))
        models = [f"{u}/{name}" for u in touched for name, _ in hf.CANDIDATES]
        at_old = {posixpath.dirname(p) for p in self.exists(old, models)} if models else set()
        at_new = {posixpath.dirname(p) for p in self.exists(new, models)} if models else set()
        for u, parts in touched.items():
            status = (
                "modified" if u in at_old and u in at_new else "added" if u in at_new else "removed"
            )
            out.append(
                Change(
                    status,
                    u if u in at_old else None,
                    u if u in at_new else None,
                    folder=True,
                    parts=tuple(sorted(parts)),
                )
            )
        return out

    def exists(self, side: Side, paths: list[str]) -> set[str]:
        """Which of ``paths`` are files at ``side`` (one git call)."""
        if side is WORKTREE:
            return {p for p in paths if os.path.isfile(os.path.join(self.top, p))}
        if side == INDEX:
            return {e.path for e in self._index_entries(paths)}
        return {e.path for e in self._tree_entries(side, paths, recursive=False) if e.size >= 0}

    def folder_of(self, path: str, side: Side) -> str | None:
        """The model folder ``path`` is a file of at ``side`` (its directory holds a sharded
        index or an adapter there), or None."""
        folder, name = posixpath.split(path)
        if not folder or not folder_file(name):
            return None
        return folder if self.exists(side, [f"{folder}/{m}" for m in hf.FOLDER_MARKERS]) else None

    # -- trees, the index and blobs --------------------------------------------------------
    def _tree_entries(self, rev: str, paths: Sequence[str], *, recursive: bool) -> list[_Entry]:
        args = ["--literal-pathspecs", "ls-tree", "-z", "-l", "--full-tree"]
        if recursive:
            args.append("-r")
        out = self.git(*args, rev, "--", *paths)
        entries = []
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, _, path = rec.partition(b"\t")
            mode, kind, sha, size = meta.split()
            if kind == b"blob" and mode[:2] == b"10":  # regular files (not links, submodules)
                entries.append(_Entry(os.fsdecode(path), mode.decode(), sha.decode(), int(size)))
            elif kind == b"tree" and not recursive:
                entries.append(_Entry(os.fsdecode(path), mode.decode(), sha.decode(), -1))
        return entries

    def _index_entries(self, paths: Sequence[str]) -> list[_Entry]:
        out = self.git("--literal-pathspecs", "ls-files", "-s", "-z", "--", *paths)
        found = []
        for rec in out.split(b"\0"):
            if rec:
                meta, _, path = rec.partition(b"\t")
                mode, sha, stage = meta.split()
                if stage == b"0" and mode[:2] == b"10":
                    found.append((os.fsdecode(path), mode.decode(), sha.decode()))
        sizes = self._sizes([sha for _, _, sha in found])
        return [_Entry(p, mode, sha, sizes[sha]) for p, mode, sha in found]

    def _sizes(self, shas: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        out = self.git(
            "cat-file",
            "--batch-check=%(objectname) %(objectsize)",
            input="".join(f"{s}\n" for s in wanted).encode(),
        )
        sizes = {}
        for line in out.decode().splitlines():
            sha, _, size = line.partition(" ")
            if size.isdigit():
                sizes[sha] = int(size)
        return sizes

    def _read_small(self, shas: Iterable[str]) -> dict[str, bytes]:
        """Blob contents by id, all through one ``git cat-file --batch`` (small blobs only)."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        out = self.git("cat-file", "--batch", input="".join(f"{s}\n" for s in wanted).encode())
        blobs: dict[str, bytes] = {}
        i = 0
        for sha in wanted:
            j = out.index(b"\n", i)
            head = out[i:j].split()
            if len(head) < 3:  # "<sha> missing"
                raise GitError(f"cannot read blob {sha[:12]}", hint="run `git fsck`")
            size = int(head[2])
            blobs[sha] = out[j + 1 : j + 1 + size]
            i = j + 1 + size + 1
        return blobs

    def _entries(self, side: str, path: str) -> tuple[bool, list[_Entry]]:
        """(is a folder, its files) for ``path`` at a revision or ``INDEX``."""
        if side == INDEX:
            entries = self._index_entries([path] if path else [])
            here = [e for e in entries if e.path == path]
            if here:
                return False, here
            inside = (
                [e for e in entries if e.path.startswith(path.rstrip("/") + "/")]
                if path
                else entries
            )
            if not inside:
                raise GitError(
                    f"path {display_path(path)!r} is not in the index",
                    hint="stage it with `git add` or give a revision (HEAD:path)",
                )
            return True, inside
        rev = self.resolve(side)
        if path:
            top = self._tree_entries(rev, [path], recursive=False)
            if not top:
                raise GitError(
                    f"path {display_path(path)!r} does not exist in {side}",
                    hint=f"list the files with `git ls-tree -r --name-only {side}`",
                )
            if top[0].size >= 0:
                return False, top
        return True, self._tree_entries(rev, [path] if path else [], recursive=True)

    # -- opening checkpoints ---------------------------------------------------------------
    def open(self, side: Side, path: str, *, display: str | None = None, **kw: Any) -> Checkpoint:
        """Open ``path`` (top-level relative; a file or a model folder) as it is at ``side``.

        ``WORKTREE`` opens the file on disk. A revision or ``INDEX``: an LFS object is
        opened where it lies in the store; a plain blob is streamed into a temporary file; a
        folder is laid out in a temporary directory, LFS objects linked, not copied. The
        temporary copy goes when the checkpoint closes. ``kw`` goes to the reader.
        """
        label = display or (
            display_path(path) if side is WORKTREE else f"{side}:{display_path(path)}"
        )
        if side is WORKTREE:
            return open_local(os.path.join(self.top, *path.split("/")), display=label, **kw)
        is_folder, entries = self._entries(side, path)
        small = self._read_small(e.sha for e in entries if lfs.could_be_pointer(e.size))
        pointers = {sha: lfs.parse_pointer(data) for sha, data in small.items()}
        if not is_folder:
            ptr = pointers.get(entries[0].sha)
            if ptr is not None:
                return open_named(self._lfs_object(ptr, label), label, path, **kw)
        tmp = tempfile.mkdtemp(prefix="model-diff-rev-")
        try:
            target = os.path.join(tmp, posixpath.basename(path) or "checkout")
            if is_folder:
                for e in entries:
                    rel = posixpath.relpath(e.path, path) if path else e.path
                    dest = os.path.join(target, *rel.split("/"))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    self._write_blob(e, dest, f"{label}/{display_path(rel)}", small, pointers)
                inner = _relabel(lambda: open_any(target, **kw), target, tmp, label)
            else:
                self._write_blob(entries[0], target, label, small, pointers)
                inner = open_named(target, label, path, **kw)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return _owning(inner, label, tmp)

    def _lfs_object(self, ptr: lfs.LFSPointer, label: str) -> str:
        return lfs.resolve_pointer(ptr, label=label, starts=[self.common_dir])

    def _write_blob(
        self,
        e: _Entry,
        dest: str,
        label: str,
        small: Mapping[str, bytes],
        pointers: Mapping[str, lfs.LFSPointer | None],
    ) -> None:
        ptr = pointers.get(e.sha)
        if ptr is not None:
            os.symlink(self._lfs_object(ptr, label), dest)
        elif e.sha in small:
            with open(dest, "wb") as f:
                f.write(small[e.sha])
        else:  # `git cat-file` streams the blob into the file, never through our memory
            with open(dest, "wb") as f:
                proc = run(["cat-file", "blob", e.sha], cwd=self.top, stdout=f, check=False)
            if proc.returncode != 0:
                raise GitError(
                    f"cannot read {label} (blob {e.sha[:12]}): {_last_line(proc)}",
                    hint="check the repository with `git fsck`",
                )


# -- REV:path arguments ----------------------------------------------------------------------


def open_revision(
    rev: str,
    path: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    display: str | None = None,
    **kw: Any,
) -> Checkpoint:
    """Open ``path`` (relative to ``cwd``, as git resolves it) as it is at ``rev`` (``""``:
    the index), named ``display`` (default ``REV:path``, escaped): the ``REV:path`` half of
    ``spec.open_spec``."""
    repo = Repo.discover(cwd)
    label = display or display_path(f"{rev}:{path}")
    return repo.open(INDEX if rev == "" else rev, repo.repo_path(path), display=label, **kw)


def _relabel(opener: Callable[[], Checkpoint], target: str, tmp: str, name: str) -> Checkpoint:
    """Run ``opener``; errors name what the user asked for, never our temporary directory."""
    try:
        return opener()
    except ModelDiffError as exc:
        if exc.path and exc.path.startswith(tmp):
            exc.path = name + exc.path[len(target) :]
        exc.message = exc.message.replace(target, name).replace(tmp, name)
        raise


def _owning(inner: Checkpoint, label: str, tmp: str) -> Checkpoint:
    """``inner`` renamed ``label``, removing ``tmp`` when closed (or collected unclosed)."""
    finalizers: list[weakref.finalize] = []

    def remove_tmp() -> None:
        finalizers[0]()

    ckpt = inner.relabeled(label, closers=[remove_tmp, inner.close])  # closers run last-first
    finalizers.append(weakref.finalize(ckpt, shutil.rmtree, tmp, ignore_errors=True))
    return ckpt


def _paths(c: Change) -> list[str]:
    return [p for p in (c.old_path, c.new_path, *c.parts) if p]


def _match(path: str, spec: str) -> bool:
    if spec == "":
        return True
    if any(ch in spec for ch in "*?["):
        return fnmatchcase(path, spec)
    return path == spec or path.startswith(spec.rstrip("/") + "/") or spec.startswith(path + "/")
