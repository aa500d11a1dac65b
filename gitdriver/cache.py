"""model-diff's own textconv cache: output keyed by content identity, not by path or blob id.

``git log -p`` runs the textconv once per file per commit; a checkpoint that did not change
between commits has the same content, so its lines are looked up instead of recomputed.

- **Key**: the LFS oid when the input is a pointer (no need to read the object on a hit), else
  xxh3-128 of the whole file plus its size; the output-format version and the mode (full or
  fast) are part of the path, so a format change never serves old lines.
- **Where**: ``<git common dir>/model-diff/textconv-cache/`` inside a repository (shared by
  linked worktrees, removed with the repository), else ``$XDG_CACHE_HOME/model-diff/
  textconv-cache`` (default ``~/.cache``).
- **Writes are atomic** (temp file + rename) so concurrent git processes never read half an
  entry; **size is bounded** by trimming least-recently-used entries (a hit refreshes mtime).
- **Writes cost O(1)**: the total size is tracked by a ledger file that every write appends
  one byte per ``LEDGER_UNIT`` bytes to (``O_APPEND``: concurrent git processes never lose an
  update), so the cache is walked only when the ledger says it is over its bound; a walk then
  trims it to 3/4 of the bound, so walks stay rare however long a ``git log -p`` runs.
- Only complete conversions are stored: a pointer whose object is missing is never cached
  (that is exactly how git's own ``cachetextconv`` gets poisoned, GIT-NOTES 3c).

``MODEL_DIFF_NO_CACHE=1`` turns it off; ``MODEL_DIFF_CACHE_MAX_MB`` bounds it (default 64).
This module must not import click or dulwich, nor run subprocesses (textconv calls it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from model_diff.formats.lfs import git_common_dirs
from model_diff.hashing import file_xxh3_sized

#: Version of the textconv output format: bump when the lines change. It keys this cache's
#: paths and the command ``install --cachetextconv`` registers (git's own cache key).
TEXTCONV_FORMAT_VERSION = 1

DEFAULT_MAX_BYTES = 64 << 20
#: One ledger byte stands for up to this many bytes of entries written.
LEDGER_UNIT = 256
#: The ledger file, in the cache root (not an entry: names starting with "." are not).
LEDGER = ".size-ledger"


def file_key(path: str | os.PathLike[str]) -> str:
    """``xxh3-<32 hex>-<size>`` of a file's bytes (streamed, one reused page-aligned buffer)."""
    digest, size = file_xxh3_sized(path)
    return f"xxh3-{digest}-{size}"


def lfs_key(oid: str) -> str:
    return f"lfs-{oid}"


def default_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory for the repository around ``start`` (or the user cache outside)."""
    # The same walk the LFS reader uses to find the object store (GIT_COMMON_DIR / GIT_DIR
    # first, then .git directories or gitdir: files upwards): file reads only, no subprocess.
    common = next(iter(git_common_dirs([os.fspath(start) if start else os.getcwd()])), None)
    if common is not None:
        return Path(common).resolve() / "model-diff" / "textconv-cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "model-diff" / "textconv-cache"


def _max_bytes() -> int:
    raw = os.environ.get("MODEL_DIFF_CACHE_MAX_MB")
    if raw:
        with contextlib.suppress(ValueError):
            return max(0, int(float(raw) * (1 << 20)))
    return DEFAULT_MAX_BYTES


class TextconvCache:
    """Entries under ``root/v<version>/<mode>/<first 2 hex digits>/<key>``; LRU-bounded."""

    def __init__(self, root: Path, *, version: int, max_bytes: int | None = None) -> None:
        self.root = root
        self.version = version
        self.max_bytes = _max_bytes() if max_bytes is None else max_bytes

    @classmethod
    def for_cwd(cls, version: int) -> TextconvCache | None:
        """The cache textconv uses, or None when ``MODEL_DIFF_NO_CACHE`` is set."""
        if os.environ.get("MODEL_DIFF_NO_CACHE"):
            return None
        return cls(default_root(), version=version)

    def _path(self, key: str, mode: str) -> Path:
        shard = key.split("-", 1)[-1][:2]
        return self.root / f"v{self.version}" / mode / shard / key

    def get(self, key: str, mode: str) -> str | None:
        p = self._path(key, mode)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        with contextlib.suppress(OSError):
            os.utime(p)  # most recently used
        return text

    def put(self, key: str, mode: str, text: str) -> None:
        """Store an entry atomically, then trim if the ledger says the cache is over its bound;
        failures are silent (a cache is optional)."""
        p = self._path(key, mode)
        data = text.encode("utf-8")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, p)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            if self._account(len(data)) > self.max_bytes:
                self.trim()
        except OSError:
            return

    def _account(self, nbytes: int) -> int:
        """Add ``nbytes`` to the ledger; returns the (over-)estimate of the cache's size."""
        fd = os.open(self.root / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"." * max(1, -(-nbytes // LEDGER_UNIT)))
            return os.fstat(fd).st_size * LEDGER_UNIT
        finally:
            os.close(fd)

    def entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every entry, any version."""
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith("."):  # temporary files and the ledger
                    continue
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                out.append((st.st_mtime, st.st_size, p))
        return out

    def trim(self) -> int:
        """Delete least-recently-used entries until the rest fit in 3/4 of the bound (the
        headroom keeps walks rare); re-seed the ledger with the true total. Returns the
        number of entries removed."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        target = self.max_bytes * 3 // 4
        for _, size, p in sorted(entries, key=lambda e: (e[0], str(e[2]))):
            if total <= target:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
            total -= size
        with contextlib.suppress(OSError):
            (self.root / LEDGER).write_bytes(b"." * (-(-total // LEDGER_UNIT)))
        return removed

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
