"""Low-rank structure of a 2-D weight update (new - old), at bounded cost.

``analyze_delta(a_flat, b_flat, shape)`` answers "could this update be stored as a LoRA of
rank r?": the rank that holds 90% / 99% of the delta's energy (squared Frobenius norm) and
its entropy-based effective rank. It never forms more than a row chunk of the delta at a time
(``CHUNK_ELEMENTS``; a matrix that fits one chunk is formed once and reused by every pass):

- matrices with min(m, n) <= ``RANK_LIMIT`` get an exact SVD of the small Gram matrix;
- larger ones use a randomized range finder with ``POWER_ITERATIONS`` subspace iterations
  (Halko, Martinsson & Tropp 2011): 2 + 2*q passes over the delta, O(m*n*k) work, memory
  O((m + n)*k) plus one chunk. A sketch of width ``FIRST_SKETCH`` (24) runs first; only when
  its directions hold >= ``WIDEN_IF_CAPTURED`` of the energy without reaching 99% is it
  redone at width ``RANK_LIMIT`` (64). ``rank_limit`` in the result is the width used.

The ranks are honest: the captured energy of the top-r estimated directions is a lower bound
of the true top-r energy, and it is compared with the exact total energy ||delta||^2 computed
in the same pass. When the k directions hold less than 90% (99%) the rank is reported as
None with ``rank_limit`` = k ("more than k").

The inputs may be storage views (``TensorRef.storage()``: uint16 bits of a bfloat16, uint8
of a float8) named by ``dtypes``: each chunk is widened to float32 exactly
(``dtypes.storage_to_float32``: bits shifted for bfloat16, a 256-entry table for float8)
into a reused buffer, so the analysis never imports ml_dtypes.

"auto" (the default of ``DiffConfig.low_rank``) runs only on matrices with at most
``AUTO_MAX_ELEMENTS`` elements, the most-changed first, until ``AUTO_BUDGET_ELEMENTS``
elements or ``AUTO_MAX_MATRICES`` matrices are analysed (``ModelDiff`` picks them after the
metrics pass): a deterministic rule
(no timing), so two runs give the same report, and a bounded cost (~0.1 s here) whatever
the checkpoint's size. ``force=True`` runs on any size.

This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .blas import single_threaded_blas
from .dtypes import ML_DTYPES_NAMES, storage_to_float32

#: Width of the randomized sketch: ranks up to this are resolved, above it "> RANK_LIMIT".
RANK_LIMIT = 64
#: Width of the first, cheaper sketch; widened to RANK_LIMIT when its top directions hold
#: at least WIDEN_IF_CAPTURED of the energy but not 99% of it.
FIRST_SKETCH = 24
WIDEN_IF_CAPTURED = 0.5
#: Subspace (power) iterations: sharpen the spectrum for slowly decaying updates.
POWER_ITERATIONS = 1
#: "auto" analyses matrices up to this many elements (1024 x 1024): each costs ~6-10 ms of
#: CPU, while the compiled metrics pass over the same tensor costs ~1 ms (docs/performance.md).
AUTO_MAX_ELEMENTS = 1024 * 1024
#: "auto" analyses at most this many elements in all (8 matrices of 1024 x 1024).
AUTO_BUDGET_ELEMENTS = 8 * 1024 * 1024
#: ... and at most this many matrices: an analysis also costs ~0.1 ms whatever its size, and
#: a checkpoint of 20,000 small matrices (a mixture of experts cut fine) fitted 17,000 of them
#: into the element budget: 2-3 s of low-rank analysis (docs/performance.md).
AUTO_MAX_MATRICES = 64
#: Elements of the delta materialised at once (float32), whatever the matrix size.
CHUNK_ELEMENTS = 1 << 20
#: Singular values kept in the result (largest first).
TOP_SINGULAR_VALUES = 8


_SCRATCH = threading.local()


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 buffers of ``size`` elements, reused by every analysis the calling thread
    runs: fresh ones cost a page fault per 4 KiB touched, ~3 ms of a ~11 ms analysis of a
    1024 x 1024 bfloat16 pair. Kept per thread (analyses run on several), at most
    ``CHUNK_ELEMENTS`` each (larger rows get fresh buffers), until the thread ends or calls
    ``release_scratch``."""
    if size > CHUNK_ELEMENTS:
        return np.empty(size, np.float32), np.empty(size, np.float32)
    kept: tuple[np.ndarray, np.ndarray] | None = getattr(_SCRATCH, "buffers", None)
    if kept is None or kept[0].size < size:
        kept = (np.empty(size, np.float32), np.empty(size, np.float32))
        _SCRATCH.buffers = kept
    return kept[0][:size], kept[1][:size]


def release_scratch() -> None:
    """Drop the calling thread's reused buffers (``ModelDiff`` calls it after its analyses:
    pool threads drop theirs when they end)."""
    _SCRATCH.__dict__.pop("buffers", None)


class _Delta:
    """The delta ``b - a`` as an (m, n) float32 matrix, handed out in row chunks.

    Every pass of the analysis iterates ``chunks()``. A matrix that fits one chunk (every
    matrix "auto" analyses) is formed once and reused by all passes; a larger one is
    recomputed chunk by chunk on each pass, so memory stays at one chunk whatever its size.
    """

    def __init__(
        self, a: np.ndarray, b: np.ndarray, m: int, n: int, names: tuple[str | None, str | None]
    ) -> None:
        self.a, self.b, self.m, self.n = a, b, m, n
        self.names = names
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None
        self._whole: list[tuple[int, np.ndarray]] | None = None
        if m * n <= CHUNK_ELEMENTS:
            self._whole = list(self._rows())

    def chunks(self) -> Iterable[tuple[int, np.ndarray]]:
        return self._whole if self._whole is not None else self._rows()

    def _rows(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (row offset, float32 delta rows) without materialising the whole delta."""
        a, b, m, n = self.a, self.b, self.m, self.n
        rows = max(1, CHUNK_ELEMENTS // max(n, 1))
        na, nb = self.names
        if self._buffers is None:
            self._buffers = _scratch(min(m, rows) * n)
        for r0 in range(0, m, rows):
            r1 = min(m, r0 + rows)
            sa, sb = a[r0 * n : r1 * n], b[r0 * n : r1 * n]
            # into b's buffer: this chunk's delta is read before the next one is formed
            fa, fb = (buf[: sa.size] for buf in self._buffers)
            if na is None and nb is None:
                # The ufunc casts while it reads (straight from the mapped inputs): no copies.
                d = np.subtract(sb, sa, dtype=np.float32, out=fb)
            else:  # storage views: widened exactly first
                d = np.subtract(
                    storage_to_float32(sb, nb, fb), storage_to_float32(sa, na, fa), out=fb
                )
            yield r0, d.reshape(r1 - r0, n)


def analyze_delta(
    a_flat: np.ndarray,
    b_flat: np.ndarray,
    shape: tuple[int, ...],
    force: bool = False,
    *,
    dtypes: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any] | None:
    """Low-rank summary of ``b - a`` viewed as a ``shape`` (m, n) matrix, or None if skipped.

    Returns None when ``shape`` is not 2-D or, unless ``force``, when the matrix is larger
    than ``AUTO_MAX_ELEMENTS``. A delta with NaN/Inf gets ``{"skipped": "non-finite delta"}``.
    ``dtypes``: the canonical dtype names of ``a_flat``/``b_flat`` where they are storage
    views (``TensorRef.storage()``); the result is the same as for the arrays themselves.
    """
    if len(shape) != 2:
        return None
    m, n = int(shape[0]), int(shape[1])
    if m * n == 0 or min(m, n) < 2:
        return None
    if not force and m * n > AUTO_MAX_ELEMENTS:
        return None
    if a_flat.size != m * n or b_flat.size != m * n:
        raise ValueError(
            f"analyze_delta: arrays of {a_flat.size}/{b_flat.size} elements "
            f"do not match shape {shape}"
        )
    names = (_view_name(a_flat, dtypes[0]), _view_name(b_flat, dtypes[1]))
    # NaN/Inf in the delta are detected (its energy comes out non-finite) and reported as
    # skipped; numpy's warnings on the way ("invalid value encountered in matmul") must not
    # reach the user.
    with single_threaded_blas(), np.errstate(all="ignore"):
        return _analyze(a_flat, b_flat, m, n, names)


def _view_name(x: np.ndarray, name: str | None) -> str | None:
    """``name`` when ``x`` is its storage view (bits to widen), else None (cast directly)."""
    return name if name in ML_DTYPES_NAMES and x.dtype.kind == "u" else None


def _analyze(
    a_flat: np.ndarray, b_flat: np.ndarray, m: int, n: int, names: tuple[str | None, str | None]
) -> dict[str, Any]:
    if min(m, n) <= RANK_LIMIT:
        total, sigma = _exact(a_flat, b_flat, m, n, names)
        if not math.isfinite(total):
            return {"skipped": "non-finite delta", "method": "exact"}
        out = _summarize(sigma, total, min(m, n), "exact", exact=True)
        out["full_rank"] = min(m, n)
        return out
    # A narrow sketch first: it settles low-rank updates (LoRA-like) and noise-like full-rank
    # ones (little energy in the top directions) at a fraction of the cost; only updates in
    # between pay for the full-width sketch.
    delta = _Delta(a_flat, b_flat, m, n, names)
    try:
        total, sigma = _randomized(delta, FIRST_SKETCH)
        if not math.isfinite(total):
            return {"skipped": "non-finite delta", "method": "randomized"}
        out = _summarize(sigma, total, FIRST_SKETCH, "randomized", exact=False)
        if out["rank_99"] is None and out["captured_energy"] >= WIDEN_IF_CAPTURED:
            total, sigma = _randomized(delta, RANK_LIMIT)
            out = _summarize(sigma, total, RANK_LIMIT, "randomized", exact=False)
    except _Overflow:
        return {"skipped": "delta too large for float32 products", "method": "randomized"}
    out["full_rank"] = min(m, n)
    return out


def _exact(
    a: np.ndarray, b: np.ndarray, m: int, n: int, names: tuple[str | None, str | None]
) -> tuple[float, np.ndarray]:
    """Spectrum from the small side's Gram matrix (min(m, n) <= RANK_LIMIT), float64."""
    if n <= m:  # tall: D^T D (n x n) over row chunks
        gram = np.zeros((n, n), dtype=np.float64)
        for _, d in _Delta(a, b, m, n, names).chunks():
            d64 = d.astype(np.float64)
            gram += d64.T @ d64
    else:  # wide: D D^T (m x m) over column chunks
        da, db = a.reshape(m, n), b.reshape(m, n)
        cols = max(1, CHUNK_ELEMENTS // m)
        gram = np.zeros((m, m), dtype=np.float64)
        for c0 in range(0, n, cols):
            d64 = (
                storage_to_float32(db[:, c0 : c0 + cols], names[1])
                - storage_to_float32(da[:, c0 : c0 + cols], names[0])
            ).astype(np.float64)
            gram += d64 @ d64.T
    total = float(np.trace(gram))
    if not math.isfinite(total):
        return total, np.zeros(0)
    eig = np.linalg.eigvalsh(gram)[::-1]
    return total, np.sqrt(np.clip(eig, 0.0, None))


class _Overflow(Exception):
    """A product of the sketch left float32's range (a finite delta of huge values)."""


def _finite(x: np.ndarray) -> np.ndarray:
    if not np.isfinite(x).all():
        raise _Overflow
    return x


def _randomized(delta: _Delta, k: int) -> tuple[float, np.ndarray]:
    """Singular values of Q^T D for an orthonormal basis Q of D's dominant range."""
    m, n = delta.m, delta.n
    omega = gaussian_sketch(n, k)
    y = np.empty((m, k), dtype=np.float32)
    total = 0.0
    for r0, d in delta.chunks():
        total += float(np.einsum("ij,ij->", d, d, dtype=np.float64))
        y[r0 : r0 + d.shape[0]] = d @ omega
    if not math.isfinite(total):
        return total, np.zeros(0)
    if total == 0.0:
        return 0.0, np.zeros(0)
    q = _orth(_finite(y))
    for it in range(POWER_ITERATIONS + 1):
        z = np.zeros((n, q.shape[1]), dtype=np.float64)
        for r0, d in delta.chunks():
            z += (d.T @ q[r0 : r0 + d.shape[0]]).astype(np.float64)
        if it == POWER_ITERATIONS:
            # z = D^T Q, so the singular values of z are those of Q^T D.
            return total, np.linalg.svd(_finite(z), compute_uv=False)
        qz = _orth(_finite(z))
        y = np.empty((m, qz.shape[1]), dtype=np.float32)
        for r0, d in delta.chunks():
            y[r0 : r0 + d.shape[0]] = d @ qz
        q = _orth(_finite(y))
    raise AssertionError("unreachable")  # pragma: no cover


@functools.lru_cache(maxsize=8)
def gaussian_sketch(n: int, k: int) -> np.ndarray:
    """A fixed (n, k) float32 matrix of standard normal values: the sketch's test matrix
    (read-only, cached: the matrices "auto" picks mostly share their shapes).

    Counter-based (splitmix64 of the element index, then Box-Muller), so it is the same on
    every machine and every numpy version (numpy does not promise its generators' streams
    across versions, and reports must be byte-identical) and needs no ``numpy.random``
    (an import of ~15 ms on every compare).
    """
    idx = np.arange(n * k, dtype=np.uint64)
    u1 = _unit_interval(_splitmix64(idx * np.uint64(2)))
    u2 = _unit_interval(_splitmix64(idx * np.uint64(2) + np.uint64(1)))
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    out = z.astype(np.float32).reshape(n, k)
    out.flags.writeable = False
    return out


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele, Lea & Flood 2014) on uint64 counters (wrapping)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _unit_interval(bits: np.ndarray) -> np.ndarray:
    """The top 53 bits as a float64 in (0, 1): never 0, so log() stays finite."""
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _orth(x: np.ndarray) -> np.ndarray:
    """An orthonormal basis of x's column space (numerically rank-deficient columns dropped).

    Gram-eigen orthonormalisation, done twice for orthogonality to working precision: on a
    tall-skinny matrix it costs two k x k eigendecompositions and two products, far less
    than LAPACK's Householder QR here, and it handles exactly low-rank deltas gracefully.
    """
    q = x.astype(np.float64)
    for _ in range(2):
        w, v = np.linalg.eigh(q.T @ q)
        keep = w > max(float(w[-1]), 0.0) * 1e-12
        if not keep.any():
            return np.zeros((x.shape[0], 0), dtype=np.float32)
        q = q @ (v[:, keep] / np.sqrt(w[keep]))
    return q.astype(np.float32)


def _summarize(sigma: np.ndarray, total: float, k: int, method: str, exact: bool) -> dict[str, Any]:
    sigma = np.sort(np.asarray(sigma, dtype=np.float64))[::-1][:k]
    energy = sigma**2
    captured = float(energy.sum())
    out: dict[str, Any] = {"method": method, "rank_limit": k, "energy": total}
    if total <= 0.0:
        out.update(
            rank_90=0,
            rank_99=0,
            effective_rank=0.0,
            captured_energy=1.0,
            spectrum_complete=True,
            top_singular_values=[],
        )
        return out
    cum = np.cumsum(energy) / total

    def rank_for(frac: float) -> int | None:
        hit = np.nonzero(cum >= frac - 1e-12)[0]
        return int(hit[0]) + 1 if hit.size else None

    # The entropy of the normalised singular values (Roy & Vetterli 2007); over the resolved
    # spectrum only, so it is exact when the spectrum is complete and a lower bound otherwise.
    p = sigma[sigma > 0] / sigma.sum() if sigma.sum() > 0 else np.zeros(0)
    eff = float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0
    out.update(
        rank_90=rank_for(0.90),
        rank_99=rank_for(0.99),
        effective_rank=eff,
        captured_energy=min(1.0, captured / total),
        spectrum_complete=exact or captured >= total * (1 - 1e-6),
        top_singular_values=[float(s) for s in sigma[:TOP_SINGULAR_VALUES]],
    )
    return out
