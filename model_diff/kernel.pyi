"""Types of the compiled metric kernel (model_diff/kernel.c); absent when not built."""

import mmap
from typing import Literal

import numpy as np

#: The best vector level this CPU runs: "avx512" (AVX-512 F/BW/VL/BF16 on top of AVX2: bf16
#: pairs and bf16 single sides run AVX-512 loops, everything else as under "avx2"), "avx2"
#: (AVX2, FMA and F16C) or "none" (portable loops).
SIMD: Literal["avx512", "avx2", "none"]
#: The levels this CPU runs, best first (SIMD first, "none" last); each is a ``simd=`` value.
SIMD_LEVELS: tuple[str, ...]
#: The dtype names the ``a_dtype``/``b_dtype``/``dtype`` keywords accept.
DTYPES: tuple[str, ...]

#: ``simd=``: True (the default) runs the best level (SIMD), False the portable loops, a
#: level name that level (ValueError when the CPU lacks it). Results agree within the
#: tolerances tests/model_diff/test_metrics.py pins; bits may differ between levels.
Simd = bool | Literal["avx512", "avx2", "none"]

def pair_step(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    facc: np.ndarray,
    cacc: np.ndarray,
    *,
    simd: Simd = True,
    a_dtype: str | None = None,
    b_dtype: str | None = None,
) -> None: ...
def side_step(
    x: np.ndarray,
    facc: np.ndarray,
    cacc: np.ndarray,
    *,
    simd: Simd = True,
    dtype: str | None = None,
) -> None: ...
def bytes_equal(a: np.ndarray, b: np.ndarray) -> bool: ...

# Only where the platform has MADV_DONTNEED (absent from the module elsewhere).
def madvise_dontneed(mm: mmap.mmap, start: int, length: int) -> None: ...
