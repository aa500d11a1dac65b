"""The metric suite, run on both step implementations against a plain float64 reference.

Every test that computes metrics is parametrized by backend: "numpy" calls the reference
steps of ``model_diff.metrics``; "avx512", "avx2" and "portable" the compiled
``model_diff.kernel`` steps with that SIMD level forced per call (``simd="avx512"`` / ``"avx2"``
/ ``"none"``), each skipped where the CPU lacks it. The
reference below is written independently: whole-array float64 numpy with exact (``fsum``)
sums, no chunking, no accumulators.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from model_diff import metrics
from model_diff.checkpoint import from_arrays
from model_diff.diff import ChangeType, DiffConfig, ModelDiff
from tests.conftest import run_model_diff

try:
    from model_diff import kernel
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    kernel = None  # type: ignore[assignment]

_NO_KERNEL = pytest.mark.skipif(
    kernel is None, reason="model_diff.kernel not built (python setup.py build_ext -i)"
)
#: kernel.SIMD_LEVELS: the SIMD levels this CPU runs (each a ``simd=`` argument).
_LEVELS: tuple[str, ...] = kernel.SIMD_LEVELS if kernel is not None else ()
#: Backend name -> the kernel's ``simd=`` argument.
_SIMD = {"avx512": "avx512", "avx2": "avx2", "portable": "none"}


def _kernel_backend(name: str) -> Any:
    level = _SIMD[name]
    why = (
        "model_diff.kernel not built (python setup.py build_ext -i)"
        if kernel is None
        else f"this CPU lacks the kernel's {level} loops (kernel.SIMD is {kernel.SIMD!r})"
    )
    return pytest.param(name, marks=pytest.mark.skipif(level not in _LEVELS, reason=why))


#: numpy step; kernel with its AVX-512 loops, its AVX2 loops, its portable loops only.
BACKENDS = ["numpy", *(_kernel_backend(name) for name in _SIMD)]

FLOATS = [
    np.float64,
    np.float32,
    np.float16,
    ml_dtypes.bfloat16,
    ml_dtypes.float8_e4m3fn,
    ml_dtypes.float8_e5m2,
]
INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
ALL_DTYPES = [*FLOATS, *INTS, np.bool_]

RTOL = 1e-9
#: The AVX2 and AVX-512 kernels sum bf16/f16 values (pairs and single sides) in float32 over
#: 256/512-element sub-blocks (products of their short significands are exact there): ~1e-7
#: relative, far inside their own rounding.
RTOL_HALF = 1e-5
_HALF = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def rtol(backend: str, *dtypes: Any) -> float:
    """1e-9, or RTOL_HALF where the kernel's vector loops sum 16-bit floats in float32."""
    same = len({np.dtype(d) for d in dtypes}) == 1
    if backend in ("avx512", "avx2") and same and np.dtype(dtypes[0]) in _HALF:
        return RTOL_HALF
    return RTOL


def steps(backend: str) -> tuple[Callable[..., None], Callable[..., None]]:
    """The (pair, side) steps of a backend; a kernel backend asks the kernel, per call, for
    its SIMD level (no global switch: other threads may be running steps)."""
    if backend == "numpy":
        return metrics.numpy_pair_step, metrics.numpy_side_step
    assert kernel is not None
    return (
        functools.partial(kernel.pair_step, simd=_SIMD[backend]),
        functools.partial(kernel.side_step, simd=_SIMD[backend]),
    )


def run_pair(
    backend: str,
    a: np.ndarray,
    b: np.ndarray,
    threshold: float = 1e-6,
    chunk: int = metrics.CHUNK_ELEMENTS,
) -> metrics.PairMetrics:
    pair, _ = steps(backend)
    f, c = metrics.new_accumulators()
    for s in range(0, a.size, chunk):
        pair(a[s : s + chunk], b[s : s + chunk], threshold, f, c)
    return metrics.finish_pair(f, c)


def run_side(backend: str, x: np.ndarray, chunk: int = metrics.CHUNK_ELEMENTS) -> metrics.SideStats:
    _, side = steps(backend)
    f, c = metrics.new_accumulators()
    for s in range(0, x.size, chunk):
        side(x[s : s + chunk], f, c)
    return metrics._side_from(f, c, "a")


# -- the independent reference ------------------------------------------------------------


def ref_side(x: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
    v = x[keep]
    out: dict[str, Any] = {"nan_count": int(np.isnan(x).sum()), "inf_count": int(np.isinf(x).sum())}
    if v.size == 0:
        out.update(mean=None, std=None, min=None, max=None, norm=None, zero_fraction=None)
        return out
    out.update(
        mean=math.fsum(v) / v.size,
        std=float(np.std(v)),
        min=float(v.min()),
        max=float(v.max()),
        norm=math.sqrt(math.fsum(v * v)),
        zero_fraction=float(np.mean(v == 0)),
    )
    return out


def reference(a: np.ndarray, b: np.ndarray, threshold: float) -> dict[str, Any]:
    with np.errstate(over="ignore"):  # float64 overflow gives inf, which is the answer
        return _reference(a, b, threshold)


def _reference(a: np.ndarray, b: np.ndarray, threshold: float) -> dict[str, Any]:
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    both = np.isfinite(x) & np.isfinite(y)
    out: dict[str, Any] = {
        "numel": x.size,
        "finite_pairs": int(both.sum()),
        "old": ref_side(x, both),
        "new": ref_side(y, both),
    }
    xv, yv = x[both], y[both]
    n = xv.size
    if n == 0:
        for k in (
            "l2_diff",
            "l1_diff",
            "max_diff",
            "mean_diff",
            "mean_signed_diff",
            "cosine_sim",
            "relative_change",
            "change_ratio",
            "sign_flip_ratio",
        ):
            out[k] = None
        return out
    d = yv - xv
    na, nb = math.sqrt(math.fsum(xv * xv)), math.sqrt(math.fsum(yv * yv))
    if na == 0 and nb == 0:
        cos: float | None = 1.0
    elif na == 0 or nb == 0:
        cos = None
    else:
        cos = math.fsum(xv * yv) / (na * nb)
    l2 = math.sqrt(math.fsum(d * d))
    out.update(
        l2_diff=l2,
        l1_diff=math.fsum(np.abs(d)),
        max_diff=float(np.abs(d).max()),
        mean_diff=math.fsum(np.abs(d)) / n,
        mean_signed_diff=math.fsum(d) / n,
        cosine_sim=cos,
        relative_change=l2 / na if na > 0 else None,
        change_ratio=float(np.count_nonzero(np.abs(d) > threshold)) / n,
        sign_flip_ratio=float(np.count_nonzero(np.sign(xv) * np.sign(yv) < 0)) / n,
    )
    return out


def close(
    got: float | None, want: float | None, scale: float, what: str, tol: float = RTOL
) -> None:
    if want is None or got is None:
        assert got is want, f"{what}: got {got}, want {want}"
        return
    assert abs(got - want) <= tol * max(abs(want), scale), f"{what}: got {got!r}, want {want!r}"


def check_side(got: metrics.SideStats, want: dict[str, Any], what: str, tol: float = RTOL) -> None:
    assert (got.nan_count, got.inf_count) == (want["nan_count"], want["inf_count"]), what
    scale = abs(want["std"] or 0.0) + abs(want["mean"] or 0.0)
    for k in ("mean", "std", "min", "max", "norm", "zero_fraction"):
        close(getattr(got, k), want[k], scale if k in ("mean", "std") else 0.0, f"{what}.{k}", tol)


def check(m: metrics.PairMetrics, want: dict[str, Any], tol: float = RTOL) -> None:
    assert (m.numel, m.finite_pairs) == (want["numel"], want["finite_pairs"])
    scale = want["mean_diff"] or 0.0
    for k in ("l2_diff", "l1_diff", "max_diff", "mean_diff", "relative_change"):
        close(getattr(m, k), want[k], 0.0, k, tol)
    for k in ("change_ratio", "sign_flip_ratio"):  # counts: exact on every path
        close(getattr(m, k), want[k], 0.0, k)
    close(m.mean_signed_diff, want["mean_signed_diff"], scale, "mean_signed_diff", tol)
    close(m.cosine_sim, want["cosine_sim"], 0.0, "cosine_sim", tol)
    check_side(m.old, want["old"], "old", tol)
    check_side(m.new, want["new"], "new", tol)


def sample(dtype: Any, n: int, seed: int, scale: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.random(n) < 0.5
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = max(int(info.min), -(2**40)), min(int(info.max), 2**40)
        return rng.integers(lo, hi, size=n, endpoint=True).astype(dt)
    with np.errstate(over="ignore"):
        return (rng.standard_normal(n) * scale).astype(dt)


def perturbed(a: np.ndarray, seed: int) -> np.ndarray:
    """A "next checkpoint": most elements moved a little, a few sign flips, some identical."""
    rng = np.random.default_rng(seed)
    if a.dtype == np.bool_:
        b = a.copy()
        b[rng.random(a.size) < 0.1] ^= True
        return b
    if a.dtype.kind in "iu":
        step = rng.integers(-3, 4, size=a.size)
        return np.clip(
            a.astype(np.float64) + step, np.iinfo(a.dtype).min, np.iinfo(a.dtype).max
        ).astype(a.dtype)
    x = a.astype(np.float64)
    x = x + rng.standard_normal(a.size) * 0.05 * (np.abs(x) + 1e-3)
    x[rng.random(a.size) < 0.01] *= -1
    same = rng.random(a.size) < 0.2
    x[same] = a[same].astype(np.float64)
    return x.astype(a.dtype)


# -- agreement with the reference ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda t: np.dtype(t).name)
def test_every_metric_matches_float64_reference_for_every_dtype(backend: str, dtype: Any) -> None:
    """All pair metrics and side stats agree with the float64 reference within 1e-9 relative."""
    a = sample(dtype, 6007, seed=1)  # odd length: vector loops end in a scalar tail
    b = perturbed(a, seed=2)
    check(run_pair(backend, a, b, threshold=0.01), reference(a, b, 0.01), rtol(backend, dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("da", "db"),
    [
        (np.float32, ml_dtypes.bfloat16),
        (np.float16, np.float32),
        (np.int8, np.float32),
        (ml_dtypes.float8_e4m3fn, np.float64),
        (np.bool_, np.uint8),
        (np.float64, np.int64),
    ],
    ids=lambda t: np.dtype(t).name,
)
def test_dtype_changed_pairs_compare_values_across_dtypes(backend: str, da: Any, db: Any) -> None:
    """Old and new of different dtypes are compared as values (a dtype-changed tensor)."""
    a = sample(da, 4099, seed=3)
    b = perturbed(a, seed=4).astype(db)
    check(run_pair(backend, a, b, threshold=0.1), reference(a, b, 0.1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype",
    [np.float64, np.float32, np.float16, ml_dtypes.bfloat16],
    ids=lambda t: np.dtype(t).name,
)
def test_side_stats_match_reference(backend: str, dtype: Any) -> None:
    """Single-side stats (inspect, added/removed tensors) match the reference, NaN/Inf counted."""
    x = sample(dtype, 10_007, seed=5)
    x[[3, 500, 9000]] = np.nan
    x[[7, 8000]] = np.inf
    x[11] = -np.inf
    x[::13] = 0
    s = run_side(backend, x, chunk=4096)
    check_side(
        s,
        ref_side(x.astype(np.float64), np.isfinite(x.astype(np.float64))),
        "side",
        rtol(backend, dtype),
    )
    assert (s.nan_count, s.inf_count) == (3, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype", [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2], ids=lambda t: np.dtype(t).name
)
def test_every_float8_bit_pattern_converts_exactly(backend: str, dtype: Any) -> None:
    """All 256 float8 codes (incl. NaN, Inf, denormals) read as their exact float64 values."""
    codes = np.arange(256, dtype=np.uint8).view(dtype)
    exact = codes.astype(np.float64)
    m = run_pair(backend, codes, exact, threshold=0.0)
    assert m.l1_diff == 0.0 and m.max_diff == 0.0 and m.change_ratio == 0.0
    check(m, reference(codes, exact, 0.0))
    check_side(run_side(backend, codes), ref_side(exact, np.isfinite(exact)), "side")


# -- non-finite, denormal, zero-norm -------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype",
    [np.float64, np.float32, np.float16, ml_dtypes.bfloat16],
    ids=lambda t: np.dtype(t).name,
)
def test_nan_and_inf_are_counted_per_side_and_excluded_from_sums(backend: str, dtype: Any) -> None:
    """NaN/Inf on either side are counted; sums, min/max cover only pairs finite on both."""
    a = sample(dtype, 9001, seed=6)
    b = perturbed(a, seed=7)
    a[[0, 4096, 9000]] = np.nan  # block and chunk edges
    b[[4096, 17]] = np.inf
    b[2047] = -np.inf
    a[2048] = np.inf
    m = run_pair(backend, a, b, threshold=0.0, chunk=4096)
    check(m, reference(a, b, 0.0), rtol(backend, dtype))
    assert (m.old.nan_count, m.old.inf_count, m.new.nan_count, m.new.inf_count) == (3, 1, 0, 3)
    assert m.finite_pairs == 9001 - 6
    assert all(math.isfinite(v) for v in (m.l2_diff, m.l1_diff, m.cosine_sim))  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_nan_pair_has_no_metrics_but_counts(backend: str) -> None:
    """A pair with no finite position gets None metrics and full NaN counts."""
    a = np.full(1000, np.nan, dtype=np.float32)
    b = np.zeros(1000, dtype=np.float32)
    m = run_pair(backend, a, b)
    assert m.finite_pairs == 0 and m.l2_diff is None and m.cosine_sim is None
    assert m.old.nan_count == 1000 and m.new.nan_count == 0 and m.new.mean is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("dtype", "tiny"),
    [
        (np.float64, 5e-324),
        (np.float64, 1e-310),
        (np.float32, 1e-45),
        (np.float32, 1e-40),
        (np.float16, 6e-8),
        (ml_dtypes.bfloat16, 1e-39),
        (ml_dtypes.bfloat16, 1e-30),
    ],
    ids=lambda v: str(v) if isinstance(v, float) else np.dtype(v).name,
)
def test_denormal_tensors_keep_their_norms_and_signs(backend: str, dtype: Any, tiny: float) -> None:
    """Denormal values are neither flushed to zero nor lose sign flips (products in float64).

    (float64 denormals square to 0 in float64 itself, as in the reference: only flips and the
    other metrics are pinned there.)
    """
    rng = np.random.default_rng(8)
    a = (rng.integers(-3, 4, size=2053) * tiny).astype(dtype)
    b = (rng.integers(-3, 4, size=2053) * tiny).astype(dtype)
    assert np.count_nonzero(a) > 0
    m = run_pair(backend, a, b, threshold=0.0)
    check(m, reference(a, b, 0.0), rtol(backend, dtype))
    assert m.sign_flip_ratio and m.sign_flip_ratio > 0 and m.l1_diff and m.l1_diff > 0
    side = run_side(backend, a)
    check_side(
        side, ref_side(a.astype(np.float64), np.ones(a.size, bool)), "side", rtol(backend, dtype)
    )
    if np.dtype(dtype) != np.float64:
        assert m.old.norm and m.old.norm > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=lambda t: np.dtype(t).name)
def test_half_values_whose_squares_overflow_float32(backend: str, dtype: Any) -> None:
    """Large finite 16-bit values (bf16 ones whose squares overflow float32, f16 near its
    maximum) keep finite float64 norms on the pair and the single-side path: the kernel redoes
    a block whose float32 sums overflow in double."""
    big = 1e4 if np.dtype(dtype) == np.float16 else 1e30
    rng = np.random.default_rng(9)
    a = (np.clip(rng.standard_normal(4099), -6, 6) * big).astype(dtype)
    b = (a.astype(np.float64) * 0.5).astype(dtype)
    m = run_pair(backend, a, b, threshold=1.0)
    check(m, reference(a, b, 1.0), rtol(backend, dtype))
    assert m.old.norm is not None and math.isfinite(m.old.norm)
    side = run_side(backend, a)
    check_side(
        side, ref_side(a.astype(np.float64), np.ones(a.size, bool)), "side", rtol(backend, dtype)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_overflowing_sums_follow_the_reference(backend: str) -> None:
    """Finite float64 values whose squares overflow give inf norms, not NaN or garbage counts."""
    a = np.array([1e200, -1e200, 3.0, 0.0] * 5, dtype=np.float64)
    b = a * -1
    m = run_pair(backend, a, b, threshold=1.0)
    want = reference(a, b, 1.0)
    assert m.l2_diff == want["l2_diff"] == math.inf
    assert m.sign_flip_ratio == want["sign_flip_ratio"] and m.change_ratio == want["change_ratio"]
    assert m.old.nan_count == m.old.inf_count == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_norm_tensors_cosine_rules(backend: str) -> None:
    """Both all-zero -> cosine 1, relative change None; exactly one zero side -> cosine None."""
    z = np.zeros(4099, dtype=np.float32)
    x = sample(np.float32, 4099, seed=9)
    both = run_pair(backend, z, z.copy())
    assert both.cosine_sim == 1.0 and both.relative_change is None and both.l2_diff == 0.0
    assert both.old.zero_fraction == 1.0
    grew = run_pair(backend, z, x)
    assert grew.cosine_sim is None and grew.relative_change is None
    assert grew.l2_diff == pytest.approx(reference(z, x, 0)["l2_diff"], rel=RTOL)
    vanished = run_pair(backend, x, z)
    assert vanished.cosine_sim is None and vanished.relative_change == pytest.approx(1.0, rel=RTOL)


# -- layout: odd lengths, chunk boundaries, misaligned buffers -----------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 2047, 2048, 2049, 4103])
def test_odd_lengths(backend: str, n: int) -> None:
    """Lengths around the vector width and block size give the reference's answers."""
    a = sample(np.float32, n, seed=n)
    b = perturbed(a, seed=n + 1)
    check(run_pair(backend, a, b, threshold=0.01), reference(a, b, 0.01))
    check_side(run_side(backend, a), ref_side(a.astype(np.float64), np.ones(n, bool)), "side")


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunk_boundaries_do_not_change_results(backend: str) -> None:
    """Counts are identical and sums agree whatever the chunking (1 element up to whole)."""
    a = sample(ml_dtypes.bfloat16, 4103, seed=10)
    b = perturbed(a, seed=11)
    a[2048] = np.nan
    want = reference(a, b, 0.02)
    results = [run_pair(backend, a, b, 0.02, chunk=k) for k in (4103, 3, 8, 2048, 2049)]
    for m in results:
        check(m, want, rtol(backend, a.dtype))
        assert (m.change_ratio, m.sign_flip_ratio, m.old.nan_count) == (
            results[0].change_ratio,
            results[0].sign_flip_ratio,
            1,
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("offset", range(1, 8))
@pytest.mark.parametrize(
    "dtype",
    [np.float64, np.float32, np.float16, ml_dtypes.bfloat16, np.int32],
    ids=lambda t: np.dtype(t).name,
)
def test_misaligned_buffers_give_the_aligned_result(backend: str, offset: int, dtype: Any) -> None:
    """Views at byte offsets 1..7 into a buffer (as in a mapped file) read correctly."""
    a = sample(dtype, 1031, seed=12)
    b = perturbed(a, seed=13)
    raw = np.zeros(a.nbytes + 16, dtype=np.uint8)
    raw[offset : offset + a.nbytes] = a.view(np.uint8)
    raw_b = np.zeros(b.nbytes + 16, dtype=np.uint8)
    raw_b[offset + 1 : offset + 1 + b.nbytes] = b.view(np.uint8)
    ma = raw[offset : offset + a.nbytes].view(a.dtype)
    mb = raw_b[offset + 1 : offset + 1 + b.nbytes].view(b.dtype)
    got = run_pair(backend, ma, mb, threshold=0.01)
    assert got == run_pair(backend, a, b, threshold=0.01)
    check(got, reference(a, b, 0.01), rtol(backend, dtype))
    assert run_side(backend, ma) == run_side(backend, a)


def _bf16(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [31, 32, 33, 63, 64, 65, 2048 + 31, 2048 + 32, 3 * 2048 + 17])
def test_bf16_lanes_counts_and_tails(backend: str, n: int) -> None:
    """bf16 pairs at lengths around the 32-element AVX-512 step and the block: even and odd
    elements of a 32-bit word differ in kind (a wrong lane split pairs the wrong old and new
    values), and zeros, signed zeros, sign flips and changes sit only in the upper 16 words of
    each 32-word vector (a count of half a mask misses them)."""
    i = np.arange(n)
    rng = np.random.default_rng(n)
    a = np.where(i % 2 == 0, 2.0, -0.75) + rng.integers(0, 4, n) * 0.25
    b = np.where(i % 2 == 0, a, a + 0.125)  # odd elements change by exactly 0.125
    upper = i % 32 >= 16
    a[upper & (i % 5 == 0)] = 0.0
    b[upper & (i % 7 == 0)] = -0.0
    flip = upper & (i % 3 == 0) & (a != 0) & (b != 0)
    b[flip] = -b[flip]
    a16, b16 = _bf16(a), _bf16(b)
    want = reference(a16, b16, 0.1)
    m = run_pair(backend, a16, b16, threshold=0.1)
    check(m, want, rtol(backend, a16.dtype))
    assert m.sign_flip_ratio == want["sign_flip_ratio"] > 0
    assert m.old.zero_fraction == want["old"]["zero_fraction"] > 0
    assert m.new.zero_fraction == want["new"]["zero_fraction"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("side", ["old", "new"])
@pytest.mark.parametrize("pos", [0, 17, 31, 1000, 2047, 2048 + 40])
def test_bf16_denormals_are_neither_flushed_nor_miscounted(
    backend: str, side: str, pos: int
) -> None:
    """One bf16 denormal among normal values, on either side, at lane positions low and high
    in a vector and block: it is non-zero (zero counts), has a sign (sign flips) and is the
    extreme of its side, as in the reference. The AVX-512 loops (whose dot products flush
    denormals) hand such a block to the AVX2 loops: its result is exactly the AVX2 one."""
    n = 2048 * 2 + 45
    rng = np.random.default_rng(pos)
    # positive (the denormal is the minimum), over a wide range (float32 sums round)
    a = _bf16(np.exp(rng.standard_normal(n) * 3))
    b = perturbed(a, seed=pos + 1)
    b[b <= 0] = a[b <= 0]
    tiny = _bf16(-3e-39)  # exponent bits zero, mantissa non-zero
    assert 0 < abs(float(tiny[()])) < float(ml_dtypes.finfo(ml_dtypes.bfloat16).tiny)
    (a if side == "old" else b)[pos] = tiny
    want = reference(a, b, 0.01)
    m = run_pair(backend, a, b, threshold=0.01)
    check(m, want, rtol(backend, a.dtype))
    stats = m.old if side == "old" else m.new
    assert stats.min == float(tiny[()]) and stats.zero_fraction == 0.0
    assert m.sign_flip_ratio == want["sign_flip_ratio"] == 1 / n
    if backend == "avx512" and "avx2" in _LEVELS:  # the kernel's block holding the denormal
        blk = slice(pos // 2048 * 2048, pos // 2048 * 2048 + 2048)
        assert run_pair("avx512", a[blk], b[blk]) == run_pair("avx2", a[blk], b[blk])
    x = a if side == "old" else b
    one = run_side(backend, x)
    check_side(one, ref_side(x.astype(np.float64), np.ones(n, bool)), side, rtol(backend, x.dtype))
    assert one.min == float(tiny[()]) and one.zero_fraction == 0.0
    if backend == "avx512" and "avx2" in _LEVELS:
        assert run_side("avx512", x[blk]) == run_side("avx2", x[blk])


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_blocks_of_tiny_values_are_redone_in_double(backend: str) -> None:
    """Blocks whose largest magnitude is below 2^-45 (AVX-512 loops; 2^-50 for AVX2) are
    redone in float64, where products the dot-product instructions would flush survive: the
    AVX-512 result (pair and single side) is then exactly the portable loops' one, and the
    norms match the reference."""
    rng = np.random.default_rng(21)
    n = 2048 * 2 + 7
    a = _bf16(rng.standard_normal(n) * 2.0**-48)
    b = _bf16(rng.standard_normal(n) * 2.0**-64)  # squares below 2^-126 for the most part
    want = reference(a, b, 0.0)
    m = run_pair(backend, a, b, threshold=0.0)
    check(m, want, rtol(backend, a.dtype))
    assert m.new.norm and m.new.norm > 0
    side = run_side(backend, a)
    check_side(
        side, ref_side(a.astype(np.float64), np.ones(n, bool)), "side", rtol(backend, a.dtype)
    )
    if backend == "avx512":
        assert m == run_pair("portable", a, b, threshold=0.0)
        assert side == run_side("portable", a)


# -- semantics ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_threshold_is_strict_and_zero_counts_any_difference(backend: str) -> None:
    """change_ratio counts |new - old| > threshold: equal to the threshold is not a change."""
    a = np.zeros(16, dtype=np.float64)
    b = np.array([0.5] * 4 + [0.25] * 4 + [0.0] * 4 + [-0.5] * 4, dtype=np.float64)
    assert run_pair(backend, a, b, threshold=0.5).change_ratio == 0.0
    assert run_pair(backend, a, b, threshold=0.25).change_ratio == 8 / 16
    assert run_pair(backend, a, b, threshold=0.0).change_ratio == 12 / 16
    assert run_pair(backend, a, b, threshold=math.inf).change_ratio == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype", [np.float32, np.float16, ml_dtypes.bfloat16], ids=lambda t: np.dtype(t).name
)
def test_threshold_is_decided_exactly_for_narrow_floats(backend: str, dtype: Any) -> None:
    """A threshold between two representable differences splits them as in float64."""
    up = np.array([0.1], dtype=dtype)  # rounds to just above or below 0.1 per dtype
    step = float(ml_dtypes.finfo(dtype).eps) * 0.1 * 2
    vals = np.array([0.1 - step, 0.1, 0.1 + step], dtype=np.float64).astype(dtype)
    b = np.tile(np.concatenate([vals, up]), 5)
    a = np.zeros_like(b)
    want = reference(a, b, 0.1)["change_ratio"]
    assert run_pair(backend, a, b, threshold=0.1).change_ratio == want
    assert 0 < want < 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_sign_flips_ignore_zeros(backend: str) -> None:
    """A sign flip needs both sides non-zero with opposite signs (-0.0 is zero)."""
    a = np.array([1, -1, 0, -0.0, 2, -2, 1, 0], dtype=np.float32)
    b = np.array([-1, 1, -1, 1, 3, -3, 0, 0], dtype=np.float32)
    m = run_pair(backend, np.tile(a, 3), np.tile(b, 3))
    assert m.sign_flip_ratio == 2 / 8
    assert m.old.zero_fraction == 3 / 8 and m.new.zero_fraction == 2 / 8


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype", [np.float32, ml_dtypes.bfloat16, np.int16], ids=lambda t: np.dtype(t).name
)
def test_diff_of_a_tensor_with_itself_is_zero(backend: str, dtype: Any) -> None:
    """diff(a, a): every difference metric zero, cosine 1, no changed elements or flips."""
    a = sample(dtype, 5003, seed=14)
    m = run_pair(backend, a, a.copy(), threshold=0.0)
    assert (m.l2_diff, m.l1_diff, m.max_diff, m.mean_signed_diff) == (0.0, 0.0, 0.0, 0.0)
    assert m.change_ratio == 0.0 and m.sign_flip_ratio == 0.0 and m.relative_change == 0.0
    assert m.cosine_sim == pytest.approx(1.0, abs=1e-12)
    assert m.old == m.new


@pytest.mark.parametrize("backend", BACKENDS)
def test_l2_and_cosine_are_symmetric(backend: str) -> None:
    """Swapping old and new leaves l2, l1, max diff, cosine and flips unchanged."""
    a = sample(np.float32, 7001, seed=15)
    b = perturbed(a, seed=16)
    ab, ba = run_pair(backend, a, b), run_pair(backend, b, a)
    for k in ("l2_diff", "l1_diff", "max_diff", "cosine_sim", "sign_flip_ratio", "change_ratio"):
        assert getattr(ab, k) == pytest.approx(getattr(ba, k), rel=1e-12), k
    assert ab.mean_signed_diff == pytest.approx(-ba.mean_signed_diff, rel=1e-9)  # type: ignore[operator]
    assert ab.old == ba.new and ab.new == ba.old


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_each_other(backend: str) -> None:
    """The step in use gives the same counts as the numpy reference step and sums within 1e-12."""
    a = sample(np.float32, 10_007, seed=17)
    b = perturbed(a, seed=18)
    a[100] = np.nan
    mine, ref = run_pair(backend, a, b, 0.01), run_pair("numpy", a, b, 0.01)
    for f in fields(mine):
        got, want = getattr(mine, f.name), getattr(ref, f.name)
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-12), f.name
        elif not isinstance(want, metrics.SideStats):
            assert got == want, f.name


# -- the public functions on top of the steps ------------------------------------------------


def test_diff_arrays_takes_any_shape_and_layout() -> None:
    """diff_arrays/array_stats compare flat: 2-D, strided and big-endian arrays work."""
    a = sample(np.float32, 6000, seed=19).reshape(60, 100)
    b = perturbed(a.reshape(-1), seed=20).reshape(60, 100)
    want = reference(a, b, 0.01)
    check(metrics.diff_arrays(a, b, 0.01), want)
    check(metrics.diff_arrays(a.astype(">f4"), b.astype(">f4"), 0.01), want)
    wide_a, wide_b = np.repeat(a.reshape(-1), 2), np.repeat(b.reshape(-1), 2)
    check(metrics.diff_arrays(wide_a[::2], wide_b[::2], 0.01), want)
    check_side(
        metrics.array_stats(a[:, :50]),
        ref_side(a[:, :50].astype(np.float64).reshape(-1), np.ones(3000, bool)),
        "side",
    )


def test_bytes_equal_is_bitwise() -> None:
    """bytes_equal compares raw bytes: NaN equals itself, -0.0 differs from 0.0."""
    a = sample(np.float32, 10_000, seed=21)
    a[5] = np.nan
    assert metrics.bytes_equal(a, a.copy())
    b = a.copy()
    b[-1] = np.nextafter(b[-1], np.float32(np.inf))
    assert not metrics.bytes_equal(a, b)
    assert not metrics.bytes_equal(np.zeros(3, np.float32), np.array([0, 0, -0.0], np.float32))
    assert not metrics.bytes_equal(a, a[:-1])
    assert metrics.bytes_equal(a[::2], a[::2].copy())


def test_one_nan_makes_a_tensor_changed_and_is_counted() -> None:
    """ModelDiff reports a pair differing by a single NaN as modified, with the NaN counted."""
    a = sample(np.float32, 4096, seed=22)
    b = a.copy()
    b[1234] = np.nan
    c = a.copy()
    c[99] = np.inf
    old = from_arrays({"w": a, "x": a, "same": a})
    new = from_arrays({"w": b, "x": c, "same": a.copy()})
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(old, new)
    by = {d.name: d for d in diffs}
    assert by["w"].change_type is ChangeType.MODIFIED
    assert by["w"].new_stats is not None and by["w"].new_stats.nan_count == 1
    assert by["w"].l2_diff == 0.0 and by["w"].finite_pairs == 4095
    assert by["x"].change_type is ChangeType.MODIFIED and by["x"].nonfinite_new == 1
    assert by["same"].change_type is ChangeType.UNCHANGED
    assert summary.modified_parameters == 2
    json.loads(json.dumps([d.to_dict() for d in diffs]), parse_constant=_refuse)


def _refuse(token: str) -> None:
    raise ValueError(f"bare {token} in JSON")


_PROBE = """
import json, numpy as np, ml_dtypes
from model_diff import metrics
rng = np.random.default_rng(0)
a = rng.standard_normal(50_000).astype(ml_dtypes.bfloat16)
b = (a.astype(np.float32) * 1.01).astype(ml_dtypes.bfloat16)
a[7] = np.nan
m = metrics.diff_arrays(a, b, 1e-3)
print(json.dumps({"backend": metrics.BACKEND, "l2": m.l2_diff, "cos": m.cosine_sim,
                  "changed": m.change_ratio, "nan": m.old.nan_count, "mean": m.new.mean}))
"""


def test_environment_variable_forces_numpy_and_results_agree(clean_env: dict[str, str]) -> None:
    """MODEL_DIFF_NO_KERNEL=1 selects the numpy step (--version says so); results agree."""
    import subprocess
    import sys

    def probe(env: dict[str, str]) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    forced = probe({**clean_env, "MODEL_DIFF_NO_KERNEL": "1"})
    default = probe(clean_env)
    assert forced["backend"] == "numpy"
    assert default["backend"] == ("kernel" if kernel is not None else "numpy")
    assert forced["nan"] == default["nan"] == 1 and forced["changed"] == default["changed"]
    for k in ("l2", "cos", "mean"):  # bfloat16 data: the kernel sums it in float32 blocks
        assert default[k] == pytest.approx(forced[k], rel=RTOL_HALF), k
    version = run_model_diff(["--version"], {**clean_env, "MODEL_DIFF_NO_KERNEL": "1"})
    assert version.returncode == 0 and "numpy" in version.stdout
