"""Keep numpy's bundled OpenBLAS single-threaded while model-diff runs its own threads.

ModelDiff runs tensors on a thread pool; OpenBLAS starting its own threads on top (for the
numpy metric step's dot products and the low-rank products) oversubscribes the cores and its
threads spin-wait: measured 7-25x slower on a busy 2-core machine. This does what
threadpoolctl does, for numpy's bundled OpenBLAS only; where that library or its symbols are
not found it does nothing (set OPENBLAS_NUM_THREADS=1 yourself then).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np


class _BlasThreads:
    """Single-threaded OpenBLAS while any caller is inside ``single()``, restored after.

    A reference count keeps concurrent (and nested) callers from restoring the setting under
    each other.
    """

    _NAMES = (
        ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
        ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
        ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
        ("openblas_set_num_threads", "openblas_get_num_threads"),
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 1
        self._api: tuple[Any, Any] | bool | None = False  # False: not looked up yet

    def _lookup(self) -> tuple[Any, Any] | None:
        libdir = os.path.dirname(np.__file__) + ".libs"
        for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for set_name, get_name in self._NAMES:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    return getattr(lib, set_name), getattr(lib, get_name)
        return None

    @contextlib.contextmanager
    def single(self) -> Iterator[None]:
        with self._lock:
            if self._api is False:
                self._api = self._lookup()
            api = self._api if isinstance(self._api, tuple) else None
            if api is not None and self._users == 0:
                self._saved = int(api[1]())
                api[0](1)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if api is not None and self._users == 0:
                    api[0](self._saved)


_BLAS = _BlasThreads()


def single_threaded_blas() -> contextlib.AbstractContextManager[None]:
    """Context manager: OpenBLAS runs on one thread inside it (nestable, thread-safe)."""
    return _BLAS.single()
