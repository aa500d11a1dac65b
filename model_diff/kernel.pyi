"""Types of the compiled metric kernel (model_diff/kernel.c); absent when not built."""

import numpy as np

#: "avx2" when the CPU runs the vector loops, else "none" (portable loops).
SIMD: str

def pair_step(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    facc: np.ndarray,
    cacc: np.ndarray,
    *,
    simd: bool = True,
) -> None: ...
def side_step(x: np.ndarray, facc: np.ndarray, cacc: np.ndarray, *, simd: bool = True) -> None: ...
def bytes_equal(a: np.ndarray, b: np.ndarray) -> bool: ...
