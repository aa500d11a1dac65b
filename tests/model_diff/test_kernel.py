"""The compiled kernel's own contract: argument checks, GIL release, bitwise compare.

Its numbers are pinned by tests/model_diff/test_metrics.py (run on every backend); this file
covers what only the C extension does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from model_diff import metrics

kernel = pytest.importorskip(
    "model_diff.kernel", reason="model_diff.kernel not built (python setup.py build_ext -i)"
)


def test_the_kernel_is_the_active_backend_when_built() -> None:
    """With the extension importable, metrics uses it unless MODEL_DIFF_NO_KERNEL is set."""
    if os.environ.get("MODEL_DIFF_NO_KERNEL"):
        assert metrics.BACKEND == "numpy" and metrics.pair_step is metrics.numpy_pair_step
    else:
        assert metrics.BACKEND == "kernel"
        assert metrics.pair_step is kernel.pair_step and metrics.side_step is kernel.side_step
    assert kernel.SIMD in ("avx512", "avx2", "none")


_ALL_LEVELS = ("avx512", "avx2", "none")


def _level(name: str) -> object:
    """A ``simd=`` level as a test parameter, skipped where this CPU lacks it."""
    return pytest.param(
        name,
        marks=pytest.mark.skipif(
            name not in kernel.SIMD_LEVELS,
            reason=f"this CPU lacks the kernel's {name} loops (kernel.SIMD is {kernel.SIMD!r})",
        ),
    )


def test_simd_levels_name_the_best_first_and_each_is_a_simd_argument() -> None:
    """SIMD_LEVELS lists what the CPU runs, best first (SIMD), down to "none"; simd=True is
    the best level, simd=False the portable loops; a level the CPU lacks or an unknown name
    is a ValueError (never a silent fallback)."""
    assert _ALL_LEVELS[_ALL_LEVELS.index(kernel.SIMD) :] == kernel.SIMD_LEVELS
    rng = np.random.default_rng(3)
    a = rng.standard_normal(5000).astype(ml_dtypes.bfloat16)
    b = (a.astype(np.float64) + rng.standard_normal(5000) * 0.1).astype(ml_dtypes.bfloat16)

    def run(simd: object) -> bytes:
        f, c = metrics.new_accumulators()
        kernel.pair_step(a, b, 0.01, f, c, simd=simd)
        kernel.side_step(a, f, c, simd=simd)
        return f.tobytes() + c.tobytes()

    by_level = {level: run(level) for level in kernel.SIMD_LEVELS}
    assert run(True) == by_level[kernel.SIMD] and run(1) == by_level[kernel.SIMD]
    assert run(False) == by_level["none"] and run(0) == by_level["none"]
    # bf16 pairs run different loops on each level (float32 sums in another order)
    assert len(set(by_level.values())) == len(by_level)
    f, c = metrics.new_accumulators()
    for bad in ("avx-512", "AVX2", ""):
        with pytest.raises(ValueError, match="simd must be True, False"):
            kernel.pair_step(a, b, 0.01, f, c, simd=bad)
    for missing in set(_ALL_LEVELS) - set(kernel.SIMD_LEVELS):
        with pytest.raises(ValueError, match="not available on this CPU"):
            kernel.side_step(a, f, c, simd=missing)
    assert list(c) == [0] * metrics.NC


def test_length_mismatch_is_a_value_error() -> None:
    """Old and new chunks must hold the same number of elements (bytes may differ)."""
    f, c = metrics.new_accumulators()
    with pytest.raises(ValueError, match="length mismatch"):
        kernel.pair_step(np.zeros(4, np.float32), np.zeros(5, np.float32), 0.0, f, c)
    kernel.pair_step(np.zeros(4, np.float32), np.zeros(4, np.float64), 0.0, f, c)
    assert c[metrics.C_N] == 4


@pytest.mark.parametrize(
    ("facc", "cacc"),
    [
        (np.zeros(metrics.NF, np.float32), np.zeros(metrics.NC, np.int64)),
        (np.zeros(metrics.NF - 1), np.zeros(metrics.NC, np.int64)),
        (np.zeros(metrics.NF), np.zeros(metrics.NC, np.int32)),
        (np.zeros(metrics.NF), np.zeros(metrics.NC + 1, np.int64)),
    ],
)
def test_accumulators_must_have_the_slot_layout(facc: np.ndarray, cacc: np.ndarray) -> None:
    """Wrong dtype or slot count of facc/cacc is refused instead of corrupting memory."""
    with pytest.raises(ValueError, match="must be"):
        kernel.pair_step(np.zeros(3), np.zeros(3), 0.0, facc, cacc)
    with pytest.raises(ValueError, match="must be"):
        kernel.side_step(np.zeros(3), facc, cacc)


def test_read_only_accumulators_are_refused() -> None:
    """Accumulators are written in place, so read-only ones are an error."""
    f, c = metrics.new_accumulators()
    f.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        kernel.side_step(np.zeros(3), f, c)


@pytest.mark.parametrize(
    "arr",
    [np.zeros(4, np.complex64), np.zeros(4, ">f4"), np.zeros(4, "U1")],
    ids=["complex64", "big-endian", "str"],
)
def test_unsupported_dtypes_are_a_type_error(arr: np.ndarray) -> None:
    """Dtypes the kernel cannot read raise TypeError (metrics routes them to numpy instead)."""
    f, c = metrics.new_accumulators()
    with pytest.raises(TypeError, match="unsupported dtype"):
        kernel.side_step(arr, f, c)
    assert metrics.steps_for(arr) == (metrics.numpy_pair_step, metrics.numpy_side_step)


def test_non_contiguous_input_is_refused_and_routed_to_numpy() -> None:
    """A strided view cannot be read as one buffer: an error here, numpy step in metrics."""
    x = np.arange(10, dtype=np.float32)[::2]
    f, c = metrics.new_accumulators()
    with pytest.raises(ValueError, match="contiguous"):
        kernel.side_step(x, f, c)
    assert metrics.steps_for(x)[1] is metrics.numpy_side_step
    assert metrics.array_stats(x).mean == pytest.approx(4.0)


def test_accumulators_are_added_to_not_overwritten() -> None:
    """A step adds into running totals: two half steps equal one whole step."""
    x = np.linspace(-2, 3, 1001, dtype=np.float32)
    f1, c1 = metrics.new_accumulators()
    kernel.side_step(x, f1, c1)
    f2, c2 = metrics.new_accumulators()
    kernel.side_step(x[:500], f2, c2)
    kernel.side_step(x[500:], f2, c2)
    assert list(c1) == list(c2)
    np.testing.assert_allclose(f1, f2, rtol=1e-14)


def _turns_while(call: Callable[[], object], times: int = 8) -> int:
    """Turns of a Python loop on this thread while another thread makes ``call`` ``times``
    times: a call that held the GIL for its ~10 ms would leave the loop a handful of turns."""
    done = threading.Event()

    def work() -> None:
        try:
            for _ in range(times):
                call()
        finally:
            done.set()

    turns = 0
    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        turns += 1
    t.join()
    return turns


def test_the_gil_is_released_while_computing() -> None:
    """Another Python thread keeps running while a large chunk is being reduced."""
    a = np.ones(1 << 22, dtype=np.float32)
    b = np.full(1 << 22, 2.0, dtype=np.float32)
    f, c = metrics.new_accumulators()
    assert _turns_while(lambda: kernel.pair_step(a, b, 0.0, f, c)) > 10_000
    assert c[metrics.C_CHANGED] == 8 * a.size


def test_bytes_equal_compares_raw_bytes_of_any_dtype() -> None:
    """memcmp semantics: NaN payloads compare equal to themselves, sizes must match."""
    a = np.array([np.nan, 1.0, -0.0], dtype=np.float64)
    assert kernel.bytes_equal(a, a.copy())
    assert not kernel.bytes_equal(a, np.array([np.nan, 1.0, 0.0]))
    assert not kernel.bytes_equal(a, a[:2].copy())
    assert kernel.bytes_equal(a.view(np.uint8), a.view(np.int16).copy())


def test_bytes_equal_finds_a_difference_before_and_after_its_first_page() -> None:
    """The first 4096 bytes are compared with the GIL held and the rest without it: a
    difference on either side of that edge, or at it, is found; short buffers too."""
    for n in (1, 4095, 4096, 4097, 3 * 4096 + 5):
        a = np.arange(n, dtype=np.uint8)
        assert kernel.bytes_equal(a, a.copy())
        for i in sorted({0, min(n - 1, 4095), min(n - 1, 4096), n - 1}):
            b = a.copy()
            b[i] ^= 1
            assert not kernel.bytes_equal(a, b), (n, i)


@pytest.mark.skipif(
    not hasattr(kernel, "madvise_dontneed") or not os.path.exists("/proc/self/statm"),
    reason="needs MADV_DONTNEED and Linux /proc",
)
def test_madvise_dontneed_drops_the_pages_of_a_file_mapping(tmp_path: Path) -> None:
    """madvise_dontneed gives the mapped pages of a range back (resident memory falls), the
    data stays readable, a range outside the mapping is refused, and a closed mapping too."""
    import mmap

    page = mmap.PAGESIZE
    path = tmp_path / "data.bin"
    path.write_bytes(np.arange(8 << 20, dtype=np.uint32).tobytes())  # 32 MiB

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    arr = np.frombuffer(mm, np.uint32)
    before = resident()
    assert int(arr[:: page // 4].sum(dtype=np.int64)) > 0  # touch every page
    touched = resident()
    kernel.madvise_dontneed(mm, 0, len(mm))
    released = resident()
    assert touched - before > 24 << 20 and touched - released > 24 << 20
    assert int(arr[-1]) == (8 << 20) - 1  # read back from the page cache
    with pytest.raises(ValueError):
        kernel.madvise_dontneed(mm, page, len(mm))
    with pytest.raises(ValueError):
        kernel.madvise_dontneed(mm, -page, page)
    del arr
    mm.close()
    with pytest.raises(ValueError):
        kernel.madvise_dontneed(mm, 0, page)


def test_the_simd_choice_is_per_call_while_other_threads_run() -> None:
    """Threads asking for the vector loops and threads asking for the portable loops at the
    same time each get exactly their own loops' result (no global switch between them)."""
    levels = kernel.SIMD_LEVELS
    if len(levels) < 2:
        pytest.skip("only the portable loops exist on this CPU")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1 << 18).astype(ml_dtypes.bfloat16)  # sums differ by loop kind
    y = (x.astype(np.float64) * 1.01).astype(ml_dtypes.bfloat16)

    def stats(simd: str) -> bytes:
        f, c = metrics.new_accumulators()
        kernel.pair_step(x, y, 1e-3, f, c, simd=simd)
        return f.tobytes() + c.tobytes()

    expected = {level: stats(level) for level in levels}
    assert len(set(expected.values())) == len(levels)  # else this test could not tell them apart
    got: list[tuple[str, bytes]] = []

    def run(simd: str) -> None:
        for _ in range(20):
            got.append((simd, stats(simd)))

    threads = [threading.Thread(target=run, args=(levels[i % len(levels)],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 120 and all(r == expected[simd] for simd, r in got)


class _Odd:
    """Not an array: a ``dtype`` whose fields are not what numpy would give."""

    class dtype:
        kind = 1
        itemsize = 4
        byteorder = "="
        name = "float32"


class _Bytes(bytearray):
    dtype = np.dtype(np.float32)


def test_every_error_path_raises_a_python_exception() -> None:
    """Malformed inputs raise TypeError / ValueError, never "error return without exception
    set" (SystemError) or a crash: a non-string dtype field, a byte length that is not a
    whole number of elements, an object without a dtype."""
    f, c = metrics.new_accumulators()
    with pytest.raises(TypeError, match="unsupported dtype"):
        kernel.side_step(_Odd(), f, c)
    with pytest.raises(ValueError, match="whole number"):
        kernel.side_step(_Bytes(5), f, c)
    with pytest.raises(ValueError, match="whole number"):
        kernel.pair_step(_Bytes(8), _Bytes(6), 0.0, f, c)
    with pytest.raises(AttributeError):
        kernel.side_step(b"abcd", f, c)
    with pytest.raises(TypeError):
        kernel.side_step(np.zeros(4), f, c, simd=True, extra=1)
    kernel.side_step(_Bytes(8), f, c)  # two float32 zeros: fine
    assert c[metrics.C_N] == 2


_ML = ("bfloat16", "float8_e4m3fn", "float8_e5m2")


def _sample(name: str, n: int = 1003, seed: int = 0) -> np.ndarray:
    """``n`` values of the dtype called ``name`` (a NaN among them where it has one)."""
    dt = np.dtype(getattr(ml_dtypes, name)) if name in _ML else np.dtype(name)
    x = np.random.default_rng(seed).standard_normal(n) * 4
    if name in _ML or dt.kind == "f":
        x[5] = np.nan
    return x.astype(dt) if dt.kind != "u" else np.abs(x).astype(dt)


@pytest.mark.parametrize("simd", [_level(name) for name in _ALL_LEVELS])
@pytest.mark.parametrize("name", list(kernel.DTYPES))
def test_a_named_dtype_reads_any_array_of_its_item_size_as_that_dtype(name: str, simd: str) -> None:
    """DTYPES are the canonical names; a storage view (same bits as an unsigned integer)
    with the name gives exactly what the array of that dtype gives without one."""
    a, b = _sample(name, seed=1), _sample(name, seed=2)
    bits = np.dtype(f"u{a.dtype.itemsize}")
    f1, c1 = metrics.new_accumulators()
    kernel.pair_step(a, b, 0.01, f1, c1, simd=simd)
    f2, c2 = metrics.new_accumulators()
    kernel.pair_step(
        a.view(bits), b.view(bits), 0.01, f2, c2, simd=simd, a_dtype=name, b_dtype=name
    )
    assert f1.tobytes() == f2.tobytes() and list(c1) == list(c2)
    s1, t1 = metrics.new_accumulators()
    kernel.side_step(a, s1, t1, simd=simd)
    s2, t2 = metrics.new_accumulators()
    kernel.side_step(a.view(bits), s2, t2, simd=simd, dtype=name)
    assert s1.tobytes() == s2.tobytes() and list(t1) == list(t2)


def test_named_dtypes_are_checked() -> None:
    """An unknown name is a ValueError; a name whose item size is not the array's, or a
    big-endian array, a TypeError (never a silent misread)."""
    f, c = metrics.new_accumulators()
    x = np.zeros(8, np.uint16)
    with pytest.raises(ValueError, match="unknown dtype name"):
        kernel.side_step(x, f, c, dtype="bf16")
    with pytest.raises(TypeError, match="bfloat16 view needs 2-byte elements"):
        kernel.side_step(np.zeros(8, np.uint8), f, c, dtype="bfloat16")
    with pytest.raises(TypeError, match="float32 view needs 4-byte"):
        kernel.pair_step(x, x, 0.0, f, c, a_dtype="bfloat16", b_dtype="float32")
    with pytest.raises(TypeError, match="unsupported dtype"):
        kernel.side_step(np.zeros(8, ">u2"), f, c, dtype="bfloat16")
    assert list(c) == [0] * metrics.NC  # nothing was added by the refused calls
    kernel.pair_step(x, x, 0.0, f, c, a_dtype="bfloat16")  # b: uint16 by its own dtype
    assert c[metrics.C_N] == 8


#: side_step_if_equal's block (kernel.c EQUAL_BLOCK = 16 * BLOCK): lengths around it matter.
_EQUAL_BLOCK = 16 * 2048


@pytest.mark.parametrize("simd", [_level(name) for name in _ALL_LEVELS])
@pytest.mark.parametrize("name", ["bfloat16", "float32", "float16", "float64", "int8"])
def test_side_step_if_equal_is_side_step_exactly_for_equal_bytes(name: str, simd: str) -> None:
    """For equal buffers it returns True and adds exactly what side_step adds (the same
    blocks, folded in the same order: bit for bit), whatever the length around its block
    size, NaN included, with the logical dtype named over a storage view."""
    for n in (7, 31, 4096, _EQUAL_BLOCK - 1, _EQUAL_BLOCK, 3 * _EQUAL_BLOCK + 77):
        x = _sample(name, n, seed=n)
        storage = x.view(np.uint16) if name == "bfloat16" else x
        f1, c1 = metrics.new_accumulators()
        f1[metrics.F_SUM_A] = 0.5  # added to, not overwritten
        f2, c2 = f1.copy(), c1.copy()
        assert kernel.side_step_if_equal(storage, storage.copy(), f1, c1, simd=simd, dtype=name)
        kernel.side_step(storage, f2, c2, simd=simd, dtype=name)
        assert f1.tobytes() == f2.tobytes() and list(c1) == list(c2), (name, n)


def test_side_step_if_equal_answers_false_at_any_difference_and_leaves_the_sums() -> None:
    """A difference in the first bytes (compared with the GIL held), at a block edge, or in
    the last element, a length mismatch, and equal values with other bytes (-0.0 vs 0.0):
    False, with the accumulators untouched."""
    n = 3 * _EQUAL_BLOCK + 5
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    untouched = metrics.new_accumulators()
    for i in (0, 1023, 1024, _EQUAL_BLOCK - 1, _EQUAL_BLOCK, 2 * _EQUAL_BLOCK + 3, n - 1):
        y = x.copy()
        y[i] = np.nextafter(y[i], np.float32(np.inf))
        f, c = metrics.new_accumulators()
        assert not kernel.side_step_if_equal(x, y, f, c), i
        assert f.tobytes() == untouched[0].tobytes() and list(c) == list(untouched[1]), i
    f, c = metrics.new_accumulators()
    assert not kernel.side_step_if_equal(x, x[:-1].copy(), f, c)
    z = np.zeros(8, np.float32)
    assert not kernel.side_step_if_equal(z, -z, f, c)  # equal values, other bits
    assert f.tobytes() == untouched[0].tobytes() and list(c) == list(untouched[1])


def test_side_step_if_equal_lets_go_of_the_gil_and_checks_its_arguments() -> None:
    """Another thread runs while a large equal pair is compared and read; malformed
    accumulators and byte lengths are the same errors as side_step's."""
    x = np.ones(1 << 22, dtype=np.float32)
    y = x.copy()
    f, c = metrics.new_accumulators()
    assert _turns_while(lambda: kernel.side_step_if_equal(x, y, f, c)) > 10_000
    assert c[metrics.C_N] == 8 * x.size  # every call found the buffers equal
    with pytest.raises(ValueError, match="float64 array"):
        kernel.side_step_if_equal(x, y, np.zeros(3), c)
    with pytest.raises(ValueError, match="whole number"):
        kernel.side_step_if_equal(_Bytes(5), _Bytes(5), f, c)
    with pytest.raises(TypeError, match="unsupported dtype"):
        kernel.side_step_if_equal(_Odd(), x, f, c)
