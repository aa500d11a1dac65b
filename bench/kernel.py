"""In-cache rate of the compiled metrics kernel: element pairs (or elements) per second, one core.

Runs ``model_diff.kernel.pair_step`` and ``side_step`` on one thread over arrays small enough
to stay in cache (``--elements``, default 256K per side), so the figure is the kernel's own
arithmetic, not memory or page mapping (``bench/engine.py`` measures those). Best of
``--repeats`` runs of ``--seconds`` each, per SIMD level (``--simd``: every level the CPU
runs, ``kernel.SIMD_LEVELS``, unless named; ``--dtype`` likewise). Not part of the test suite.
Run from the repository root after building the extension (``python setup.py build_ext
--inplace`` or an install):

    python bench/kernel.py
    python bench/kernel.py --elements 524288 --dtype bf16 --simd avx512 avx2

With ``--mapped OLD NEW`` (two bf16 safetensors files, warm in the page cache) it instead times
``pair_step`` over the two memory-mapped data sections on ``--threads`` threads in chunks of
``--chunk`` elements, per SIMD level, next to a ``memcmp`` pass that reads the same bytes
(``kernel.bytes_equal`` of each chunk with itself), in rounds (each level once per round):

    python bench/kernel.py --mapped old.safetensors new.safetensors --threads 2
"""

from __future__ import annotations

import argparse
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

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


def bf16_data(path: str) -> tuple[mmap.mmap, np.ndarray]:
    """The data section of a safetensors file, mapped, as bf16 storage (uint16)."""
    with open(path, "rb") as fh:
        m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    start = 8 + int.from_bytes(m[:8], "little")
    return m, np.frombuffer(m, dtype=np.uint16, offset=start, count=(len(m) - start) // 2)


def mapped(args: argparse.Namespace, kernel: Any, levels: list[str]) -> None:
    """Wall time of one pass over the mapped pair per level, and of a memcmp pass."""
    (_, a), (_, b) = bf16_data(args.mapped[0]), bf16_data(args.mapped[1])
    n, ch, nt = min(a.size, b.size), args.chunk, args.threads

    def wall(step: Callable[[int, int], None]) -> float:
        def work(lo: int, hi: int) -> None:
            for s in range(lo, hi, ch):
                step(s, min(hi, s + ch))

        bounds = [i * n // nt for i in range(nt + 1)]
        ts = [threading.Thread(target=work, args=bounds[i : i + 2]) for i in range(nt)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return time.perf_counter() - t0

    f, c = metrics.new_accumulators()

    def pair(level: str) -> Callable[[int, int], None]:
        return lambda s, e: kernel.pair_step(
            a[s:e], b[s:e], 1e-6, f, c, simd=level, a_dtype="bfloat16", b_dtype="bfloat16"
        )

    def memcmp(s: int, e: int) -> None:
        kernel.bytes_equal(a[s:e], a[s:e])
        kernel.bytes_equal(b[s:e], b[s:e])

    runs: dict[str, Callable[[int, int], None]] = {"memcmp": memcmp}
    runs.update({f"pair {level}": pair(level) for level in levels})
    wall(memcmp)  # warm
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, step in runs.items():
            times[k].append(wall(step))
    print(
        f"{n} bf16 pairs ({2 * n * 2 / 2**30:.2f} GiB), {nt} threads, chunks of {ch}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for k, ts in times.items():
        print(f"{k}: " + " ".join(f"{t:.3f}" for t in ts) + f" s (best {min(ts):.3f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--elements", type=int, default=1 << 18, help="elements per side per call")
    ap.add_argument("--seconds", type=float, default=0.5, help="length of one run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    ap.add_argument("--simd", nargs="+", help="SIMD levels (default: kernel.SIMD_LEVELS)")
    ap.add_argument("--mapped", nargs=2, metavar=("OLD", "NEW"), help="bf16 safetensors pair")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=1 << 18, help="elements per pair_step call")
    args = ap.parse_args()
    if metrics.BACKEND != "kernel":
        sys.exit("the compiled kernel is not active (build it, and unset MODEL_DIFF_NO_KERNEL)")
    kernel = metrics._KERNEL
    assert kernel is not None
    levels = args.simd or list(kernel.SIMD_LEVELS)
    if args.mapped:
        mapped(args, kernel, [lv for lv in levels if lv != "none"])
        return 0
    rng = np.random.default_rng(0)
    n = args.elements
    print(
        f"one thread, {n} elements per side per call, best of {args.repeats} x "
        f"{args.seconds} s; kernel.SIMD {kernel.SIMD}; load average {os.getloadavg()[0]:.1f}"
    )
    for label in args.dtype:
        dt = DTYPES[label]
        a64 = rng.standard_normal(n)
        a = a64.astype(dt)
        b = (a64 + rng.standard_normal(n) * 0.01).astype(dt)
        f, c = metrics.new_accumulators()
        for level in levels:
            pair = rate(
                lambda a=a, b=b, f=f, c=c, s=level: kernel.pair_step(a, b, 1e-6, f, c, simd=s),
                n,
                args.seconds,
                args.repeats,
            )
            side = rate(
                lambda a=a, f=f, c=c, s=level: kernel.side_step(a, f, c, simd=s),
                n,
                args.seconds,
                args.repeats,
            )
            print(
                f"{label} {level}: pair {pair / 1e9:.2f} G pairs/s "
                f"({pair * 2 * a.itemsize / 1e9:.1f} GB/s), side {side / 1e9:.2f} G elements/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
