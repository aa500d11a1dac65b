"""Streaming per-tensor metrics: one chunked pass per tensor (pair), float64 accumulators.

The per-chunk step has one contract, shared by the numpy reference below and the compiled
kernel (``model_diff.kernel``, when built):

    pair_step(a_chunk, b_chunk, threshold, facc, cacc)   # updates facc (float64) and cacc (int64)
    side_step(x_chunk, facc, cacc)                        # single-side statistics

The passes take flat numpy arrays or ``ChunkedArray``s (quantized or re-laid tensors, read by
element range: ``chunked.take`` decodes a chunk, ``chunked.take_raw`` gives its stored
bytes), so a quantized tensor streams like any other and its identical-bytes test compares
stored blocks, never decoded values. They also take storage views (``TensorRef.storage()``:
uint16 for bfloat16, uint8 for float8) with the logical dtype named (``dtype=`` /
``dtypes=``, canonical names): the kernel is told that name and reads the bits, so a
bfloat16 checkpoint is compared without importing ml_dtypes; only the numpy step (no
kernel) views such a chunk through ml_dtypes.

Accumulator slots are the ``F_*`` / ``C_*`` indices below. Sums cover element positions where
both sides are finite; NaN/Inf are counted per side instead of poisoning the sums. Everything
above the step (chunking, bitwise short-circuit, page release, threads, result objects) is
shared, so replacing the step replaces nothing else.

This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .chunked import ChunkedArray, take, take_raw
from .dtypes import ML_DTYPES_NAMES, numpy_dtype, storage_dtype
from .numbers import finite_or_none

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

#: Elements per chunk: 256K elements keeps float64 temporaries (~2 MiB each) in cache-ish sizes.
CHUNK_ELEMENTS = 1 << 18
#: A tensor longer than this is processed in parts of this many elements (a multiple of
#: CHUNK_ELEMENTS): the parts of one tensor run on a shared thread pool, so a single large
#: tensor uses every core, and each part is reported read (the ``done`` hook: readers hand
#: its pages back) as soon as it is finished, so one huge tensor never maps itself whole.
#: Parts are merged in part order, so results do not depend on how many threads ran them.
PART_ELEMENTS = 1 << 22

#: ``done(start, stop)``: called with an element range of the inputs once it is fully read.
Done = Callable[[int, int], None]
#: What the passes read: a flat array, or a ChunkedArray read by element range.
Values = np.ndarray | ChunkedArray

# float64 accumulator slots (pair)
(
    F_SUM_D2,
    F_SUM_ABS_D,
    F_MAX_ABS_D,
    F_SUM_D,
    F_SUM_AB,
    F_SUM_A2,
    F_SUM_B2,
    F_SUM_A,
    F_SUM_B,
    F_MIN_A,
    F_MAX_A,
    F_MIN_B,
    F_MAX_B,
) = range(13)
NF = 13
# int64 counter slots (pair)
(C_N, C_FINITE, C_CHANGED, C_SIGN_FLIPS, C_NAN_A, C_INF_A, C_NAN_B, C_INF_B, C_ZERO_A, C_ZERO_B) = (
    range(10)
)
NC = 10


def _empty_accumulators() -> tuple[np.ndarray, np.ndarray]:
    f = np.zeros(NF, dtype=np.float64)
    f[[F_MIN_A, F_MIN_B]] = np.inf
    f[[F_MAX_A, F_MAX_B]] = -np.inf
    return f, np.zeros(NC, dtype=np.int64)


_EMPTY_F, _EMPTY_C = _empty_accumulators()


def new_accumulators() -> tuple[np.ndarray, np.ndarray]:
    """Fresh (float64 sums and extrema, int64 counts) accumulators of nothing yet."""
    return _EMPTY_F.copy(), _EMPTY_C.copy()  # copies of a template: one per tensor part


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    # einsum, not ``x @ y``: the BLAS dot (OpenBLAS) spawns threads per call, which ran 10x
    # slower than einsum's own loop here and oversubscribed the cores the worker pool uses.
    return float(np.einsum("i,i->", x, y))


def _as_f64(x: np.ndarray) -> np.ndarray:
    # Every supported dtype converts to float64 exactly except int64/uint64 above 2**53.
    return x.astype(np.float64, copy=False)


def numpy_pair_step(
    a: np.ndarray, b: np.ndarray, threshold: float, f: np.ndarray, c: np.ndarray
) -> None:
    """Reference step: update pair accumulators with one chunk of old (a) and new (b)."""
    # inf - inf and float64 overflow are expected here: they route the chunk to the masked
    # path (or are the true answer), so numpy's floating-point warnings are silenced.
    with np.errstate(all="ignore"):
        _numpy_pair_step(a, b, threshold, f, c)


def _numpy_pair_step(
    a: np.ndarray, b: np.ndarray, threshold: float, f: np.ndarray, c: np.ndarray
) -> None:
    a64 = _as_f64(a)
    b64 = _as_f64(b)
    c[C_N] += a64.size
    d = b64 - a64
    sums = (_dot(d, d), _dot(a64, b64), _dot(a64, a64), _dot(b64, b64))
    if not all(math.isfinite(s) for s in sums):
        # Only chunks holding NaN/Inf (or float64 overflow) pay for the element-wise mask.
        fa = np.isfinite(a64)
        fb = np.isfinite(b64)
        c[C_NAN_A] += int(np.count_nonzero(np.isnan(a64)))
        c[C_INF_A] += int(np.count_nonzero(np.isinf(a64)))
        c[C_NAN_B] += int(np.count_nonzero(np.isnan(b64)))
        c[C_INF_B] += int(np.count_nonzero(np.isinf(b64)))
        both = fa & fb
        a64, b64 = a64[both], b64[both]
        d = b64 - a64
        sums = (_dot(d, d), _dot(a64, b64), _dot(a64, a64), _dot(b64, b64))
    c[C_FINITE] += a64.size
    if a64.size == 0:
        return
    absd = np.abs(d)
    f[F_SUM_D2] += sums[0]
    f[F_SUM_AB] += sums[1]
    f[F_SUM_A2] += sums[2]
    f[F_SUM_B2] += sums[3]
    f[F_SUM_ABS_D] += float(absd.sum())
    f[F_MAX_ABS_D] = max(f[F_MAX_ABS_D], float(absd.max()))
    f[F_SUM_D] += float(d.sum())
    f[F_SUM_A] += float(a64.sum())
    f[F_SUM_B] += float(b64.sum())
    f[F_MIN_A] = min(f[F_MIN_A], float(a64.min()))
    f[F_MAX_A] = max(f[F_MAX_A], float(a64.max()))
    f[F_MIN_B] = min(f[F_MIN_B], float(b64.min()))
    f[F_MAX_B] = max(f[F_MAX_B], float(b64.max()))
    c[C_CHANGED] += int(np.count_nonzero(absd > threshold))
    c[C_SIGN_FLIPS] += int(np.count_nonzero(((a64 < 0) & (b64 > 0)) | ((a64 > 0) & (b64 < 0))))
    c[C_ZERO_A] += int(np.count_nonzero(a64 == 0))
    c[C_ZERO_B] += int(np.count_nonzero(b64 == 0))


def numpy_side_step(x: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
    """Reference single-side step: uses the A slots of the pair layout."""
    with np.errstate(all="ignore"):
        _numpy_side_step(x, f, c)


def _numpy_side_step(x: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
    x64 = _as_f64(x)
    c[C_N] += x64.size
    s2 = _dot(x64, x64)
    if not math.isfinite(s2):
        c[C_NAN_A] += int(np.count_nonzero(np.isnan(x64)))
        c[C_INF_A] += int(np.count_nonzero(np.isinf(x64)))
        x64 = x64[np.isfinite(x64)]
        s2 = _dot(x64, x64)
    c[C_FINITE] += x64.size
    if x64.size == 0:
        return
    f[F_SUM_A2] += s2
    f[F_SUM_A] += float(x64.sum())
    f[F_MIN_A] = min(f[F_MIN_A], float(x64.min()))
    f[F_MAX_A] = max(f[F_MAX_A], float(x64.max()))
    c[C_ZERO_A] += int(np.count_nonzero(x64 == 0))


PairStep = Callable[[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray], None]
SideStep = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def _select_steps() -> tuple[str, PairStep, SideStep, ModuleType | None]:
    if os.environ.get("MODEL_DIFF_NO_KERNEL"):
        return "numpy", numpy_pair_step, numpy_side_step, None
    try:
        from . import kernel  # here, not at the top: the environment variable decides
    except ImportError:
        return "numpy", numpy_pair_step, numpy_side_step, None
    return "kernel", kernel.pair_step, kernel.side_step, kernel


#: "kernel" when the compiled fused step is active, else "numpy" (shown by --version).
#: ``MODEL_DIFF_NO_KERNEL=1`` in the environment forces "numpy".
BACKEND, pair_step, side_step, _KERNEL = _select_steps()


def version_message() -> str:
    """The ``--version`` line: the package version and the active metrics backend."""
    from . import __version__

    return f"model-diff {__version__} (metrics backend: {BACKEND})"


#: Element dtypes the kernel reads (native byte order), by numpy name: a set of dtype objects
#: would import ml_dtypes (bfloat16, float8) on every start, even for a float32 file.
_KERNEL_DTYPES = frozenset(
    {
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "float8_e4m3fn",
        "float8_e5m2",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
    }
)


@functools.lru_cache(maxsize=256)
def _dtype_name(dt: np.dtype) -> str:
    # numpy's ``dtype.name`` is a Python property (~8 us): asked several times per tensor.
    return dt.name


def logical_name(x: Values, name: str | None) -> str:
    """The dtype name ``x``'s elements are read as: ``name`` when ``x`` is that dtype's
    storage view (uint16 for ``bfloat16``, uint8 for ``float8_*``), else ``x``'s own dtype
    (``name`` is then redundant: a plain dtype, or a quantized type decoded to float32)."""
    if name in ML_DTYPES_NAMES and x.dtype == storage_dtype(name):
        return name
    return _dtype_name(x.dtype)


def _kernel_reads(*arrays: Values) -> bool:
    # A ChunkedArray's chunks are fresh contiguous arrays of its dtype.
    return _KERNEL is not None and all(
        _dtype_name(x.dtype) in _KERNEL_DTYPES
        and x.dtype.isnative
        and (isinstance(x, ChunkedArray) or x.flags.c_contiguous)
        for x in arrays
    )


def _flat(x: Values) -> Values:
    return x if isinstance(x, ChunkedArray) or x.ndim == 1 else x.reshape(-1)


@functools.lru_cache(maxsize=64)
def _kernel_steps(a_name: str, b_name: str) -> tuple[PairStep, SideStep]:
    assert _KERNEL is not None  # for mypy: only asked where _kernel_reads says so
    return (
        functools.partial(_KERNEL.pair_step, a_dtype=a_name, b_dtype=b_name),
        functools.partial(_KERNEL.side_step, dtype=a_name),
    )


def steps_for(*arrays: Values, dtypes: tuple[str | None, ...] = ()) -> tuple[PairStep, SideStep]:
    """The (pair, side) steps for these arrays: the kernel's where it reads them.

    ``dtypes`` names what each array holds (``logical_name``); the pair step reads
    ``arrays[0]``/``arrays[1]``, the side step ``arrays[0]``. The kernel is always told the
    logical names; the numpy step views a storage chunk as its ml_dtypes type."""
    names = [logical_name(x, dtypes[i] if i < len(dtypes) else None) for i, x in enumerate(arrays)]
    if _kernel_reads(*arrays):
        return _kernel_steps(names[0], names[1] if len(names) > 1 else names[0])
    views = [
        numpy_dtype(n) if n != _dtype_name(x.dtype) else None
        for n, x in zip(names, arrays, strict=True)
    ]
    if not any(v is not None for v in views):
        return numpy_pair_step, numpy_side_step
    va = views[0]
    vb = views[1] if len(views) > 1 else va

    def pair(a: np.ndarray, b: np.ndarray, thr: float, f: np.ndarray, c: np.ndarray) -> None:
        numpy_pair_step(a if va is None else a.view(va), b if vb is None else b.view(vb), thr, f, c)

    def side(x: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
        numpy_side_step(x if va is None else x.view(va), f, c)

    return pair, side


def bytes_equal(a: Values, b: Values) -> bool:
    """True when both arrays hold exactly the same bytes (no float math: NaN == NaN here).

    A ``ChunkedArray`` is compared by its stored bytes in element order (quantized blocks
    as stored), chunk by chunk."""
    if a.nbytes != b.nbytes:
        return False
    if isinstance(a, ChunkedArray) or isinstance(b, ChunkedArray):
        if a.size != b.size:
            return False
        return all(_raw_equal(a, b, lo, hi) for lo, hi in _spans(0, a.size))
    if _KERNEL is not None and a.flags.c_contiguous and b.flags.c_contiguous:
        return bool(_KERNEL.bytes_equal(a, b))  # memcmp without the GIL
    fa, fb = a.reshape(-1), b.reshape(-1)
    if fa.dtype.itemsize != fb.dtype.itemsize:
        fa, fb = fa.view(np.uint8), fb.view(np.uint8)  # contiguous here: sizes differ per item
    for start, stop in _spans(0, fa.size):
        ca = np.ascontiguousarray(fa[start:stop]).view(np.uint8)
        cb = np.ascontiguousarray(fb[start:stop]).view(np.uint8)
        if not np.array_equal(ca, cb):
            return False
    return True


@dataclass(frozen=True)
class SideStats:
    """Statistics of one side of a tensor pair (over its finite elements)."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    norm: float | None
    zero_fraction: float | None
    nan_count: int
    inf_count: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, in field order (non-finite floats become None); spelled out: a report
        asks twice per tensor."""
        fin = finite_or_none
        return {
            "mean": fin(self.mean),
            "std": fin(self.std),
            "min": fin(self.min),
            "max": fin(self.max),
            "norm": fin(self.norm),
            "zero_fraction": fin(self.zero_fraction),
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
        }


@dataclass(frozen=True)
class PairMetrics:
    """Every metric of one tensor pair; None where a metric is undefined (with the reason)."""

    numel: int
    finite_pairs: int
    l2_diff: float | None
    l1_diff: float | None
    max_diff: float | None
    mean_diff: float | None
    mean_signed_diff: float | None
    cosine_sim: float | None
    relative_change: float | None
    change_ratio: float | None
    sign_flip_ratio: float | None
    old: SideStats
    new: SideStats


#: (sum, sum of squares, min, max) float slots and (nan, inf, zero) count slots of each side.
_SIDE_SLOTS = {
    "a": (F_SUM_A, F_SUM_A2, F_MIN_A, F_MAX_A, C_NAN_A, C_INF_A, C_ZERO_A),
    "b": (F_SUM_B, F_SUM_B2, F_MIN_B, F_MAX_B, C_NAN_B, C_INF_B, C_ZERO_B),
}


def _side_from(f: np.ndarray, c: np.ndarray, side: str) -> SideStats:
    return _side_of(f.tolist(), c.tolist(), side)


def _side_of(f: list[float], c: list[int], side: str) -> SideStats:
    # Python floats and ints (``tolist()``): indexing an ndarray makes a numpy scalar each time.
    s, s2, mn, mx, nan, inf, zero = _SIDE_SLOTS[side]
    n = c[C_FINITE]
    if n == 0:
        return SideStats(None, None, None, None, None, None, c[nan], c[inf])
    mean = f[s] / n
    var = max(f[s2] / n - mean * mean, 0.0)
    return SideStats(
        mean=mean,
        std=math.sqrt(var),
        min=f[mn],
        max=f[mx],
        norm=math.sqrt(f[s2]),
        zero_fraction=c[zero] / n,
        nan_count=c[nan],
        inf_count=c[inf],
    )


def finish_pair(facc: np.ndarray, cacc: np.ndarray) -> PairMetrics:
    """Turn pair accumulators into metrics (definitions in DESIGN §5)."""
    f, c = facc.tolist(), cacc.tolist()
    n, fin = c[C_N], c[C_FINITE]
    old, new = _side_of(f, c, "a"), _side_of(f, c, "b")
    if fin == 0:
        return PairMetrics(n, 0, None, None, None, None, None, None, None, None, None, old, new)
    l2 = math.sqrt(f[F_SUM_D2])
    na, nb = math.sqrt(f[F_SUM_A2]), math.sqrt(f[F_SUM_B2])
    if na == 0.0 and nb == 0.0:
        cos: float | None = 1.0
    elif na == 0.0 or nb == 0.0:
        cos = None
    else:
        cos = max(-1.0, min(1.0, f[F_SUM_AB] / (na * nb)))
    return PairMetrics(
        numel=n,
        finite_pairs=fin,
        l2_diff=l2,
        l1_diff=f[F_SUM_ABS_D],
        max_diff=f[F_MAX_ABS_D],
        mean_diff=f[F_SUM_ABS_D] / fin,
        mean_signed_diff=f[F_SUM_D] / fin,
        cosine_sim=cos,
        relative_change=(l2 / na) if na > 0 else None,
        change_ratio=c[C_CHANGED] / fin,
        sign_flip_ratio=c[C_SIGN_FLIPS] / fin,
        old=old,
        new=new,
    )


def _raw_equal(a: Values, b: Values, start: int, stop: int) -> bool:
    """Stored bytes of elements ``[start, stop)`` equal on both sides."""
    if isinstance(a, ChunkedArray) or isinstance(b, ChunkedArray):
        return bytes_equal(take_raw(a, start, stop), take_raw(b, start, stop))
    return bytes_equal(a[start:stop], b[start:stop])


def _spans(lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each chunk of ``[lo, hi)`` (chunk boundaries are multiples of
    CHUNK_ELEMENTS, so parts and whole arrays cut chunks alike)."""
    for start in range(lo, hi, CHUNK_ELEMENTS):
        yield start, min(hi, start + CHUNK_ELEMENTS)


_SUM_SLOTS = [F_SUM_D2, F_SUM_ABS_D, F_SUM_D, F_SUM_AB, F_SUM_A2, F_SUM_B2, F_SUM_A, F_SUM_B]


@functools.lru_cache(maxsize=1)
def _parts_executor() -> ThreadPoolExecutor:
    """The process-wide pool the parts of large tensors run on (threads start on first use)."""
    from concurrent.futures import ThreadPoolExecutor  # only large tensors need it (start-up)

    return ThreadPoolExecutor(max_workers=default_workers(), thread_name_prefix="model-diff-part")


def merge_accumulators(
    into: tuple[np.ndarray, np.ndarray], part: tuple[np.ndarray, np.ndarray]
) -> None:
    """Fold one part's accumulators into ``into`` (sums and counts add, extrema combine)."""
    f, c = into
    pf, pc = part
    f[_SUM_SLOTS] += pf[_SUM_SLOTS]
    for k in (F_MAX_ABS_D, F_MAX_A, F_MAX_B):
        f[k] = max(f[k], pf[k])
    for k in (F_MIN_A, F_MIN_B):
        f[k] = min(f[k], pf[k])
    c += pc


Accumulators = tuple[np.ndarray, np.ndarray]


def _in_parts(
    fn: Callable[[int, int], Accumulators | None], n: int, done: Done | None, workers: int | None
) -> Accumulators | None:
    """``fn(start, stop)`` over ``[0, n)`` in parts, merged in part order (None if any part is).

    One part runs inline (the caller releases the pages); several run on the part pool when
    ``workers`` allows more than one thread, else inline one after another, and ``done`` is
    told about each part once it has been read.
    """
    if n <= PART_ELEMENTS:
        return fn(0, n)
    bounds = [(s, min(n, s + PART_ELEMENTS)) for s in range(0, n, PART_ELEMENTS)]

    def run(start: int, stop: int) -> Accumulators | None:
        try:
            return fn(start, stop)
        finally:
            if done is not None:
                done(start, stop)

    if (workers or default_workers()) > 1:
        futures = [_parts_executor().submit(run, s, e) for s, e in bounds]
        try:
            results = [fut.result() for fut in futures]
        finally:
            for fut in futures:  # an interrupted wait leaves no queued parts behind
                fut.cancel()
    else:
        results = [run(s, e) for s, e in bounds]
    if any(r is None for r in results):
        return None
    total = results[0]
    assert total is not None  # for mypy: checked just above
    for r in results[1:]:
        assert r is not None
        merge_accumulators(total, r)
    return total


def diff_arrays(
    a: Values,
    b: Values,
    threshold: float,
    *,
    dtypes: tuple[str | None, str | None] = (None, None),
    done: Done | None = None,
    workers: int | None = None,
) -> PairMetrics:
    """All pair metrics of two arrays of equal size (compared flat), in one chunked pass.

    ``dtypes``: the canonical dtype names of ``a`` and ``b`` where they are storage views
    (``TensorRef.storage()``; see ``logical_name``). A long pair runs in parts
    (``PART_ELEMENTS``) on up to ``workers`` threads; ``done`` hears of each part once it is
    read (readers release its pages).
    """
    if a.size != b.size:
        raise ValueError(f"length mismatch: {a.size} vs {b.size}")
    a, b = _flat(a), _flat(b)
    step, _ = steps_for(a, b, dtypes=dtypes)
    thr = float(threshold)
    # The kernel walks a mapped part itself (in L1-sized blocks, without the GIL): one call
    # per part spares thousands of Python round trips; the numpy step needs bounded chunks.
    whole = _kernel_reads(a, b) and isinstance(a, np.ndarray) and isinstance(b, np.ndarray)

    def part(lo: int, hi: int) -> Accumulators:
        f, c = new_accumulators()
        for start, stop in [(lo, hi)] if whole else _spans(lo, hi):
            step(take(a, start, stop), take(b, start, stop), thr, f, c)
        return f, c

    acc = _in_parts(part, a.size, done, workers)
    assert acc is not None  # part() never returns None
    return finish_pair(*acc)


def array_stats(
    x: Values,
    *,
    dtype: str | None = None,
    done: Done | None = None,
    workers: int | None = None,
) -> SideStats:
    """Single-side statistics of an array (taken flat) in one chunked pass (parts as above);
    ``dtype`` as one of ``diff_arrays``' ``dtypes``."""
    x = _flat(x)
    _, step = steps_for(x, dtypes=(dtype,))
    whole = _kernel_reads(x) and isinstance(x, np.ndarray)  # one kernel call per part

    def part(lo: int, hi: int) -> Accumulators:
        f, c = new_accumulators()
        for start, stop in [(lo, hi)] if whole else _spans(lo, hi):
            step(take(x, start, stop), f, c)
        return f, c

    acc = _in_parts(part, x.size, done, workers)
    assert acc is not None
    return _side_from(*acc, "a")


def stats_if_equal(
    a: Values,
    b: Values,
    *,
    dtype: str | None = None,
    done: Done | None = None,
    workers: int | None = None,
) -> SideStats | None:
    """``b``'s statistics when ``a`` and ``b`` hold the same bytes, else None (``dtype``: what
    both hold, as for ``array_stats``; callers compare the two sides' dtypes themselves).

    One pass: each chunk is compared and, while it is still in cache, fed to the side step,
    so an identical tensor is read twice (once per side) instead of three times
    (``bytes_equal`` then ``array_stats``). Where the kernel reads both, that is one
    ``side_step_if_equal`` call per part (it compares and reads in cache-sized blocks itself),
    with the same sums as ``array_stats``. A difference in the first chunk (the usual case for
    a modified tensor) answers before any part starts; parts stop at the first difference any
    of them finds.
    """
    if a.nbytes != b.nbytes or a.dtype != b.dtype or a.size != b.size:
        return None
    a, b = _flat(a), _flat(b)
    if not _raw_equal(a, b, 0, min(b.size, CHUNK_ELEMENTS)):
        return None  # a modified tensor (the usual case) answers here, before any set-up
    differs = threading.Event()
    if _kernel_reads(a, b) and isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        assert _KERNEL is not None  # for mypy: _kernel_reads says so
        equal_step = functools.partial(_KERNEL.side_step_if_equal, dtype=logical_name(b, dtype))

        def part(lo: int, hi: int) -> Accumulators | None:
            f, c = new_accumulators()
            if differs.is_set() or not equal_step(b[lo:hi], a[lo:hi], f, c):
                differs.set()
                return None
            return f, c

    else:
        _, step = steps_for(b, dtypes=(dtype,))

        def part(lo: int, hi: int) -> Accumulators | None:
            f, c = new_accumulators()
            for start, stop in _spans(lo, hi):
                # chunk 0 was compared above
                if differs.is_set() or (start and not _raw_equal(a, b, start, stop)):
                    differs.set()
                    return None
                step(take(b, start, stop), f, c)
            return f, c

    acc = _in_parts(part, b.size, done, workers)
    return None if acc is None else _side_from(*acc, "a")


#: Work on fewer bytes than this runs on the calling thread (a pair's two sides together, one
#: file's tensors for textconv): starting a pool costs more than it saves.
POOL_MIN_BYTES = 16 << 20
#: Items (tensor pairs, or one file's tensors) averaging fewer bytes than this run on the
#: calling thread too: per item, Python work (holding the GIL) then outweighs the kernel's
#: (without it), and threads contending for the GIL ran 1.1-1.8x slower than one thread
#: (docs/performance.md, "Many small tensors").
POOL_MIN_ITEM_BYTES = 1 << 20

#: ``map`` or a thread pool's ``map``: results in input order.
OrderedMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


#: Most items one pool task takes in turn (``ordered_map``).
BATCH_MAX = 16


@contextlib.contextmanager
def ordered_map(nbytes: int, workers: int, items: int = 1) -> Iterator[OrderedMap]:
    """A ``map`` for work over ``nbytes`` of tensor data in ``items`` items: the built-in one
    (the calling thread) under ``POOL_MIN_BYTES``, for items averaging under
    ``POOL_MIN_ITEM_BYTES``, or with one worker; else one over a pool of ``workers`` threads
    (shut down on exit; ``concurrent.futures`` is imported only then, which small inputs never
    pay). The pool runs consecutive items in batches (up to ``BATCH_MAX``, at least 8 batches
    per worker): a task per item cost each tensor a future and a wake-up of the consuming
    thread, which then competed with the workers for the GIL."""
    if workers <= 1 or nbytes < POOL_MIN_BYTES or nbytes < POOL_MIN_ITEM_BYTES * max(items, 1):
        yield map
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:

        def batched(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
            todo = list(items)
            size = max(1, min(BATCH_MAX, len(todo) // (8 * workers)))
            batches = [todo[i : i + size] for i in range(0, len(todo), size)]
            for results in pool.map(lambda batch: [fn(x) for x in batch], batches):
                yield from results

        yield batched


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))
