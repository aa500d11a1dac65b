"""In-cache rate of the compiled metrics kernel: element pairs (or elements) per second, one core.

Runs ``model_diff.kernel.pair_step`` and ``side_step`` on one thread over arrays small enough
to stay in cache (``--elements``, default 256K per side), so the figure is the kernel's own
arithmetic, not memory or page mapping (``bench/engine.py`` measures those). Best of
``--repeats`` runs of ``--seconds`` each. Not part of the test suite. Run from the repository
root after building the extension (``python setup.py build_ext --inplace`` or an install):

    python bench/kernel.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_dtypes
import numpy as np

from model_diff import metrics

DTYPES = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16, "fp16": np.float16, "fp64": np.float64}


def rate(fn: object, n: int, seconds: float, repeats: int) -> float:
    """Best elements (or pairs) per second of ``fn()`` over ``n`` elements per call."""
    best = 0.0
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while (el := time.perf_counter() - t0) < seconds:
            fn()  # type: ignore[operator]
            calls += 1
        best = max(best, calls * n / el)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--elements", type=int, default=1 << 18, help="elements per side per call")
    ap.add_argument("--seconds", type=float, default=0.5, help="length of one run")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if metrics.BACKEND != "kernel":
        sys.exit("the compiled kernel is not active (build it, and unset MODEL_DIFF_NO_KERNEL)")
    kernel = metrics._KERNEL
    assert kernel is not None
    rng = np.random.default_rng(0)
    n = args.elements
    print(
        f"one thread, {n} elements per side per call, best of {args.repeats} x "
        f"{args.seconds} s; load average {os.getloadavg()[0]:.1f}"
    )
    for label, dt in DTYPES.items():
        a64 = rng.standard_normal(n)
        a = a64.astype(dt)
        b = (a64 + rng.standard_normal(n) * 0.01).astype(dt)
        f, c = metrics.new_accumulators()
        pair = rate(
            lambda a=a, b=b, f=f, c=c: kernel.pair_step(a, b, 1e-6, f, c),
            n,
            args.seconds,
            args.repeats,
        )
        side = rate(lambda a=a, f=f, c=c: kernel.side_step(a, f, c), n, args.seconds, args.repeats)
        print(
            f"{label}: pair {pair / 1e9:.2f} G pairs/s ({pair * 2 * a.itemsize / 1e9:.1f} GB/s)"
            f", side {side / 1e9:.2f} G elements/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
