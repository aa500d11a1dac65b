"""Writing a report to ``-o PATH``: what ``open(PATH, "w")`` would do, never anything worse.

- A regular file, new or existing, is written to a temporary file beside it and renamed over
  it: a reader never sees half a report and a failed write leaves the old file as it was.
  The result has the mode a plain ``open(PATH, "w")`` would leave: the old file's for an
  existing file (owner and group kept where we may), ``0666`` less the umask for a new one.
- Anything else is written in place, never replaced or removed: a device (``/dev/null``),
  a FIFO, and the file descriptor paths ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` and
  ``/proc/.../fd/N`` (a process substitution ``>(cmd)`` arrives as ``/dev/fd/63``), whatever
  they point to. A socket or a directory is refused.
- A symlink is written through: the link stays and its target gets the report (by the rules
  above; a dangling link's target is created).

``check_destination(PATH)`` answers "can this be written?" before any work starts (missing
or read-only folder, a directory, a read-only file: ``OutputError``, exit 2), so a long
comparison never ends in a traceback. ``write_report(PATH, text)`` writes. Every ``-o`` of
every command goes through these two functions. This module must not print or exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from dataclasses import dataclass

from .errors import ModelDiffError

__all__ = ["OutputError", "check_destination", "write_report"]

#: Paths through these are written in place, never replaced: they name an open file
#: descriptor (a pipe, a terminal, a file opened for appending), not a file to swap.
_SPECIAL_ROOTS = ("/dev/fd/", "/dev/stdout", "/dev/stderr", "/dev/stdin", "/proc/")
_MAX_LINKS = 40


class OutputError(ModelDiffError):
    """The ``-o`` destination cannot be written."""


@dataclass(frozen=True)
class _Target:
    path: str  # where the bytes go: the symlink chain followed
    in_place: bool  # write into it (device, FIFO, /dev/stdout) rather than replace it
    exists: bool


def _resolve(path: str) -> _Target:
    """Follow ``path``'s symlinks; decide whether the destination is replaced or written into."""
    current = os.path.abspath(path)
    special = current.startswith(_SPECIAL_ROOTS)
    for _ in range(_MAX_LINKS):
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return _Target(current, special, exists=False)
        except OSError as e:
            raise _error(path, f"cannot be examined ({e.strerror or e})") from None
        if not stat.S_ISLNK(st.st_mode):
            break
        if special:  # /dev/stdout -> /proc/self/fd/1 -> a pipe: never resolved further
            break
        link = os.readlink(current)
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
        special = current.startswith(_SPECIAL_ROOTS)
    else:
        raise _error(path, "is a symlink loop")
    try:
        st = os.stat(current)
    except OSError as e:
        raise _error(path, f"cannot be examined ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _error(path, "is a directory", hint="give a file name for the report")
    if stat.S_ISSOCK(st.st_mode):
        raise _error(path, "is a socket", hint="write to a file, a FIFO or stdout instead")
    return _Target(current, special or not stat.S_ISREG(st.st_mode), exists=True)


def _error(path: str, what: str, hint: str | None = None) -> OutputError:
    return OutputError(what, path=path, hint=hint or "choose another -o path")


def check_destination(path: str) -> None:
    """Raise ``OutputError`` unless a report can be written to ``path`` (nothing is left
    behind: a probe file is created and removed where a new file would go)."""
    target = _resolve(path)
    if target.exists and not os.access(target.path, os.W_OK):
        raise _error(path, "is not writable (permission denied)")
    if target.in_place:
        if not target.exists:
            raise _error(path, "does not exist (no such file descriptor or device)")
        return
    folder = os.path.dirname(target.path)
    if not os.path.isdir(folder):
        raise _error(path, "cannot be written: its folder does not exist", "create it first")
    try:
        fd, probe = _create_temp(folder)
    except OSError as e:
        raise _error(
            path, f"cannot be written: its folder is not writable ({e.strerror or e})"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _create_temp(folder: str) -> tuple[int, str]:
    """A new file in ``folder`` created with mode 0666, so the kernel applies the umask exactly
    as it would to ``open(path, "w")`` (``mkstemp`` would give 0600)."""
    while True:
        name = os.path.join(folder, f".model-diff-{os.urandom(6).hex()}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), name
        except FileExistsError:
            continue


_FD_PATH = re.compile(r"/dev/fd/(\d+)|/proc/(?:self|(\d+))/fd/(\d+)")


def _own_fd(path: str) -> int | None:
    """The descriptor of ours that ``path`` names (``/dev/stdout`` is 1), or None. Writing
    to it rather than reopening keeps what the shell set up: no truncation of a file opened
    for appending (``>> log``), the same offset."""
    fd: int | None = {"/dev/stdout": 1, "/dev/stderr": 2}.get(path)
    m = _FD_PATH.fullmatch(path)
    if m is not None and (m.group(2) is None or int(m.group(2)) == os.getpid()):
        fd = int(m.group(1) or m.group(3))
    if fd is None:
        return None
    try:
        os.fstat(fd)
    except OSError:
        return None
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_report(path: str, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` by the rules in the module doc."""
    target = _resolve(path)
    data = text.encode("utf-8")
    if target.in_place:
        try:
            own = _own_fd(target.path)
            if own is not None:  # /dev/stdout, /dev/fd/N: our descriptor, as the shell left it
                sys.stdout.flush()
                _write_all(own, data)
            else:  # a device or a FIFO: opened for writing (a FIFO waits for its reader)
                fd = os.open(target.path, os.O_WRONLY)
                try:
                    _write_all(fd, data)
                finally:
                    os.close(fd)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _error(path, f"cannot be written ({e.strerror or e})") from None
        return
    folder = os.path.dirname(target.path)
    try:
        fd, tmp = _create_temp(folder)
    except OSError as e:
        raise _error(path, f"cannot be written ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if target.exists:
                old = os.stat(target.path)
                with contextlib.suppress(OSError):  # only root (or the owner) may
                    os.fchown(f.fileno(), old.st_uid, old.st_gid)
                os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode) & 0o777)
            f.write(data)
        os.replace(tmp, target.path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _error(path, f"cannot be written ({e.strerror or e})") from None
        raise
