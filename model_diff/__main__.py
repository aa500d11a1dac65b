"""The ``model-diff`` entry point: the console script and ``python -m model_diff`` alike.

The start-up-critical commands are dispatched before click (or anything a command needs) is
imported: ``textconv``, which git runs once per file per commit and which must exit 0 on any
input whatever the arguments, and ``--version``. Everything else goes to the click group in
``model_diff.cli``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    """Run ``model-diff ARGS`` (``sys.argv[1:]`` by default) and exit with its code."""
    args = sys.argv[1:] if argv is None else list(argv)
    # Before numpy is imported: model-diff runs its own threads and keeps BLAS single-threaded
    # (model_diff.blas), so the pool numpy's OpenBLAS starts at import (one thread per core,
    # spinning a while) would only take CPU from start-up and the workers. An explicit
    # setting is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # One command, then os._exit: the cyclic collector would only rescan what the command
    # keeps alive (the modules it imports, one record per tensor), 20-40 ms of a compare
    # that leaves little cyclic garbage. Reference counting still frees everything else.
    gc.disable()
    try:
        _run(args)
        code: object = 0
    except SystemExit as e:
        code = e.code
    _exit(code)


def _run(args: list[str]) -> None:
    if args[:1] == ["textconv"] and not {"-h", "--help"} & set(args[1:]):
        sys.exit(_textconv(args[1:]))
    if args == ["--version"]:
        from .metrics import version_message

        print(version_message())
        sys.exit(0)
    from .cli import main as cli_main

    cli_main(args)


def _exit(code: object) -> NoReturn:
    """Exit with ``code`` (as ``sys.exit`` reads it) once the command has finished, without
    tearing the interpreter down: freeing every object and module one by one (numpy's
    included) costs ~30 ms per run, which git pays per file and hooks per commit. What a normal
    exit does that matters still happens: exit handlers run (``atexit``, which also runs
    ``weakref.finalize`` clean-ups such as a checked-out revision's temporary folder) and the
    standard streams are flushed. Worker threads are idle by now (each command joins its
    pools)."""
    import atexit

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        status = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            # a closed pipe (the reader left) or a closed stream: nothing more to deliver
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)


def _textconv(args: list[str]) -> int:
    """The textconv driver; 0 whatever happens (a failing textconv aborts the whole git diff),
    even when the driver itself cannot be imported."""
    try:
        from model_diff.gitdriver.textconv import main as textconv_main
    except Exception as exc:  # a broken installation: still one line and exit 0
        print(f"model-diff textconv: error: cannot start: {exc!r}")
        return 0
    return textconv_main(args)


if __name__ == "__main__":
    main()
