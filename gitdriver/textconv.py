"""``model-diff textconv PATH``: the git textconv driver, one line per tensor.

Output (format version ``TEXTCONV_FORMAT_VERSION``), deterministic and independent of the
path git hands us (a temp file, a worktree path, a pointer):

    model-diff textconv v1 full
    checkpoint safetensors tensors=27 parameters=1234567 bytes=4938268 file=xxh3:<32 hex>
    model.embed_tokens.weight float32 [256,64] xxh3:<32 hex> mean=... std=... min=... max=...
        nan=0 inf=0      (one line per tensor; wrapped here)
    ...

Tensor lines are in natural order, fields separated by single spaces, so ``git diff`` marks
exactly the changed tensors and ``git diff --word-diff`` the changed fields. ``--fast`` drops
the statistics (hashing only, near read speed).

A git textconv must never fail (a non-zero exit aborts the whole ``git diff``, GIT-NOTES 3a):
every problem, expected or not, becomes one ``model-diff textconv: error: ...`` line and exit 0;
a closed pipe (``git log -p | head``) ends quietly with exit 0. A Git LFS pointer (git hands
one over under ``GIT_LFS_SKIP_SMUDGE=1`` or ``filter.lfs.required=false``) is resolved from the
local LFS store, giving the same bytes as the smudged file; an object that is not there gives
one line naming the oid, the size and ``git lfs fetch``.

Startup matters (git runs this once per file per commit): this module is reached from
``python -m model_diff textconv`` without click, and imports numpy, xxhash and the format
readers only; torch only if the file is a pickle, ml_dtypes never (tensors are read through
their storage views).
"""

from __future__ import annotations

import json
import os
import stat
import sys

from model_diff import __version__
from model_diff.checkpoint import TensorRef, in_read_order
from model_diff.errors import LFSObjectMissingError, ModelDiffError
from model_diff.formats import lfs, open_checkpoint
from model_diff.hashing import array_xxh3
from model_diff.metrics import array_stats, default_workers, ordered_map
from model_diff.terminal import printable

from .cache import TEXTCONV_FORMAT_VERSION, TextconvCache, file_key, lfs_key

_PREFIX = "model-diff textconv"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _name(name: str) -> str:
    """The name as one whitespace-free field, safe on a terminal and in a CI log: JSON-quoted
    (ASCII-only escapes, DEL and ``##[`` included) when it has spaces or non-printable
    characters, or would start a workflow command (``::``, ``##[``)."""
    if (
        not name
        or name.startswith(('"', "::"))
        or "##[" in name
        or any(c.isspace() or not c.isprintable() for c in name)
    ):
        return json.dumps(name).replace("\x7f", "\\u007f").replace("##[", "##\\u005b")
    return name


def tensor_line(ref: TensorRef, *, fast: bool) -> str:
    """One tensor's line: content hash over its mapped bytes (streamed), then statistics."""
    try:
        # The storage view (uint16 for bfloat16, uint8 for float8): the kernel is told the
        # dtype by name, so a bf16 file never imports ml_dtypes.
        arr = ref.storage()
        # Bytes only: dtype and shape are fields of the line already. Streamed from the map.
        digest = array_xxh3(arr, with_layout=False, done=ref.release_range)
        shape = "[" + ",".join(str(s) for s in ref.shape) + "]"
        line = f"{_name(ref.name)} {ref.dtype.name} {shape} xxh3:{digest}"
        if not fast:
            s = array_stats(arr, dtype=ref.dtype.name, done=ref.release_range)
            line += (
                f" mean={_fmt(s.mean)} std={_fmt(s.std)} min={_fmt(s.min)}"
                f" max={_fmt(s.max)} nan={s.nan_count} inf={s.inf_count}"
            )
        return line
    finally:
        ref.release()


def render(path: str, *, file_hash: str, fast: bool) -> str:
    """The full textconv text of a checkpoint file (pointer already known to be resolvable)."""
    with open_checkpoint(path) as ckpt:
        refs = list(ckpt.tensors.values())
        workers = min(default_workers(), max(1, len(refs)))
        lines = [""] * len(refs)  # read in file order, written in natural order
        with ordered_map(ckpt.size_bytes, workers, len(refs)) as each:
            for i, line in in_read_order(
                each, lambda r: tensor_line(r, fast=fast), refs, lambda r: r
            ):
                lines[i] = line
        header = [
            f"{_PREFIX} v{TEXTCONV_FORMAT_VERSION} {'fast' if fast else 'full'}",
            f"checkpoint {ckpt.format} tensors={len(refs)} parameters={ckpt.num_parameters}"
            f" bytes={ckpt.size_bytes} file=xxh3:{file_hash}",
        ]
        if ckpt.skipped:
            header.append("skipped " + " ".join(_name(n) for n in ckpt.skipped))
    return "\n".join(header + lines) + "\n"


def _hash_of(key: str) -> str:
    return key.split("-")[1]


def convert(path: str, *, fast: bool, cache: TextconvCache | None) -> str:
    """The textconv text for ``path``, from the cache when its content was seen before."""
    mode = "fast" if fast else "full"
    pointer = lfs.read_pointer(path)
    if pointer is not None:
        pkey = lfs_key(pointer.oid)
        if cache is not None and (hit := cache.get(pkey, mode)) is not None:
            return hit
        try:
            obj = lfs.resolve_pointer(pointer, path=path)
        except LFSObjectMissingError:
            # Never cached: once the object is fetched the real lines must appear.
            return (
                f"{_PREFIX}: Git LFS object sha256:{pointer.oid} ({pointer.size} bytes) "
                "is not fetched; run `git lfs fetch` to see its tensors\n"
            )
        fkey = file_key(obj)
        text = cache.get(fkey, mode) if cache is not None else None
        if text is None:
            text = render(path, file_hash=_hash_of(fkey), fast=fast)
            if cache is not None:
                cache.put(fkey, mode, text)  # the smudged file has the same bytes
        if cache is not None:
            cache.put(pkey, mode, text)
        return text
    fkey = file_key(path)
    if cache is not None and (hit := cache.get(fkey, mode)) is not None:
        return hit
    text = render(path, file_hash=_hash_of(fkey), fast=fast)
    if cache is not None:
        cache.put(fkey, mode, text)
    return text


def _error_line(message: str, path: str) -> str:
    """One error line naming the file by its basename (git's temp paths differ per run) and
    ending with the file's content hash: git prints nothing at all for a file whose two sides
    convert to the same text (GIT-NOTES 3a), so two different unreadable versions must not
    give the same line. Only a regular file is hashed (a FIFO would block the read)."""
    base = os.path.basename(path) or path
    for variant in {os.path.abspath(path), path}:
        message = message.replace(variant, base)
    ident = ""
    if _file_kind(path) == "file":
        try:
            key = file_key(path)
            ident = f" [file=xxh3:{_hash_of(key)} bytes={key.rsplit('-', 1)[1]}]"
        except OSError:
            pass
    return f"{_PREFIX}: error: {printable(' '.join(message.split()))}{ident}\n"


def _file_kind(path: str) -> str:
    """ "file", "directory", "missing", or what else is there (a FIFO, a socket, a device),
    from ``stat`` alone: nothing is opened, so a FIFO without a writer cannot hang us."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _parse(argv: list[str]) -> tuple[str | None, bool, str | None]:
    path, fast = None, False
    for arg in argv:
        if arg == "--fast":
            fast = True
        elif arg.startswith("--format-version="):
            continue  # only there to change git's cachetextconv key
        elif arg == "--":
            continue
        elif path is None:
            path = arg
        else:
            return None, fast, f"unexpected argument {arg!r}"
    if path is None:
        return None, fast, "usage: model-diff textconv PATH [--fast]"
    return path, fast, None


def _write(text: str) -> None:
    data = text.encode("utf-8", errors="backslashreplace")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader went away (`git log -p | head`): stop quietly, and keep the interpreter's
        # final flush from raising again on the dead pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: list[str]) -> int:
    """Entry point; always returns 0 (a failing textconv would abort git)."""
    path, fast, usage = _parse(argv)
    if usage is not None or path is None:
        _write(f"{_PREFIX}: error: {usage}\n")
        return 0
    kind = _file_kind(path)
    if kind not in ("file", "missing", "unreadable"):
        # Never opened: reading a FIFO or a device could block or never end.
        _write(_error_line(f"{path}: is a {kind}, not a regular file; nothing was read", path))
        return 0
    try:
        text = convert(path, fast=fast, cache=TextconvCache.for_cwd(TEXTCONV_FORMAT_VERSION))
    except ModelDiffError as e:
        text = _error_line(str(e), path)
    except OSError as e:
        text = _error_line(f"{path}: cannot be read: {e.strerror or e}", path)
    except Exception as e:  # a bug must still not break git: one line naming it
        text = _error_line(
            f"internal error in model-diff {__version__}: "
            f"{type(e).__name__}: {e} (please report it)",
            path,
        )
    _write(text)
    return 0
