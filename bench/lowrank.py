"""Cost of the low-rank analysis on a realistic pair: ModelDiff with low_rank off / auto / on.

    python bench/lowrank.py [--blocks 4] [--d-model 1024] [--vocab 32000] [--repeat 3]

Builds a LLaMA-style toy transformer and its fine-tune in memory (model_diff.toy), then times
``ModelDiff.diff`` three ways and prints the best of --repeat runs for each, plus how many
tensors the low-rank pass analysed. The difference between the rows is the low-rank cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model_diff.checkpoint import from_arrays
from model_diff.diff import DiffConfig, ModelDiff
from model_diff.toy import fine_tune, toy_transformer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    base = toy_transformer(n_blocks=args.blocks, d_model=args.d_model, vocab=args.vocab)
    tuned = fine_tune(base, seed=1)
    old, new = from_arrays(base), from_arrays(tuned)
    n_elems = sum(a.size for a in base.values())
    print(
        f"pair: {len(base)} tensors, {n_elems / 1e6:.1f}M float32 elements per side, "
        f"d_model={args.d_model}, blocks={args.blocks}, vocab={args.vocab}"
    )
    baseline: tuple[float, float] | None = None
    for label, mode in (("off", False), ("auto", "auto"), ("on", True)):
        best = cpu = float("inf")
        analysed = 0
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            diffs, _ = ModelDiff(DiffConfig(low_rank=mode)).diff(old, new)
            best = min(best, time.perf_counter() - t)
            cpu = min(cpu, time.process_time() - c)
            analysed = sum(1 for d in diffs if d.low_rank is not None)
        if baseline is None:
            baseline = (best, cpu)
        print(
            f"low_rank={label:<4}  wall {best:7.3f} s (+{best - baseline[0]:6.3f})  "
            f"cpu {cpu:7.3f} s (+{cpu - baseline[1]:6.3f})  "
            f"low-rank analysed: {analysed} tensors"
        )


if __name__ == "__main__":
    main()
