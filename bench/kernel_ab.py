"""Two builds of the compiled kernel, timed against each other in one process.

On a shared VM the rate of one core moves by 10% and more from one second to the next, so two
runs of ``bench/kernel.py`` (one per build) cannot tell a 5-10% change from noise. This script
loads both extension files in one interpreter (each under its own module name) and times them
in alternation, round after round (which goes first alternates too), on the same in-cache
arrays: ``pair_step`` over a perturbed pair and ``side_step`` over one side, at the best SIMD
level each build has. It prints the median and best rate of each and whether the two builds'
accumulators are identical. Not part of the test suite. Run from the repository root, e.g.
with the build of ``main`` copied aside first:

    cp model_diff/kernel.*.so /tmp/base-kernel.so
    (edit model_diff/kernel.c, then) python setup.py -q build_ext -i
    python bench/kernel_ab.py /tmp/base-kernel.so model_diff/kernel.*.so --dtype bf16
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import sys
import time
from types import ModuleType

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from model_diff import metrics

# storage dtype and kernel dtype name per --dtype
DTYPES = {"bf16": (np.uint16, "bfloat16"), "fp32": (np.float32, None), "fp16": (np.float16, None)}


def load(name: str, path: str) -> ModuleType:
    """The extension at ``path`` as module ``name`` (its init function is ``PyInit_kernel``
    whatever the package, so any ``<something>.kernel`` name loads it)."""
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def pair(n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A weight-like side and a fine-tuned one (noise 5% of the weights' scale)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
    b = a + rng.standard_normal(n, dtype=np.float32) * np.float32(0.001)
    if dtype == "bf16":  # the top halves of the float32 words: bfloat16 storage
        return (a.view(np.uint32) >> 16).astype(np.uint16), (b.view(np.uint32) >> 16).astype(
            np.uint16
        )
    return a.astype(DTYPES[dtype][0]), b.astype(DTYPES[dtype][0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="the kernel extension file to compare against")
    ap.add_argument("new", help="the kernel extension file under test")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--elements", type=int, default=1 << 19, help="per side (default 512K)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=50, help="calls per timing (default 50)")
    args = ap.parse_args(argv)
    builds = {"base": load("base.kernel", args.base), "new": load("new.kernel", args.new)}
    a, b = pair(args.elements, args.dtype)
    name = DTYPES[args.dtype][1]
    kw_pair = {"a_dtype": name, "b_dtype": name} if name else {}
    kw_side = {"dtype": name} if name else {}
    rates: dict[str, dict[str, list[float]]] = {k: {"pair": [], "side": []} for k in builds}
    order = list(builds)
    for r in range(args.rounds):
        for key in order if r % 2 == 0 else order[::-1]:
            kernel = builds[key]
            f, c = metrics.new_accumulators()
            t = time.perf_counter()
            for _ in range(args.calls):
                kernel.pair_step(a, b, 1e-6, f, c, **kw_pair)
            rates[key]["pair"].append(args.elements * args.calls / (time.perf_counter() - t))
            t = time.perf_counter()
            for _ in range(args.calls):
                kernel.side_step(a, f, c, **kw_side)
            rates[key]["side"].append(args.elements * args.calls / (time.perf_counter() - t))
    print(
        f"{args.dtype}, {args.elements} elements per side, {args.rounds} alternating rounds of "
        f"{args.calls} calls; SIMD base {builds['base'].SIMD}, new {builds['new'].SIMD}"
    )
    for key in builds:
        parts = []
        for what, unit in (("pair", "G pairs/s"), ("side", "G elements/s")):
            xs = sorted(rates[key][what])
            parts.append(
                f"{what} median {xs[len(xs) // 2] / 1e9:.2f} best {xs[-1] / 1e9:.2f} {unit}"
            )
        print(f"{key}: " + "; ".join(parts))
    acc = {}
    for key, kernel in builds.items():
        f, c = metrics.new_accumulators()
        kernel.pair_step(a, b, 1e-6, f, c, **kw_pair)
        fs, cs = metrics.new_accumulators()
        kernel.side_step(b, fs, cs, **kw_side)
        acc[key] = (f.tobytes(), c.tobytes(), fs.tobytes(), cs.tobytes())
    print("accumulators identical:", acc["base"] == acc["new"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
