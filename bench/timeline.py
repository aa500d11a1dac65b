"""Timeline benchmark: peak RSS and time of ``model-diff timeline DIR`` over a run of
``--count`` safetensors checkpoints of ``--size-mb`` each (default: 20 x 200 MB).

The run has the LLaMA-like layout of ``bench/engine.py`` (d_model 1024) and is written
piece by piece into a temporary folder outside the repository: checkpoint k is checkpoint
k-1 (read back through a memory map) plus a small random update, thirty times larger at the
middle step (a learning-rate spike); names ``step_<k*100>.safetensors`` with ``global_step``
metadata, so the command reads every header to order them, then walks the N - 1 pairs.
The page cache is warmed first; the command runs in a fresh process
(``python -m model_diff timeline DIR --format F -o FILE``) with its peak RSS from ``wait4``.
Not part of the test suite. Run from the repository root:

    python bench/timeline.py                      # 20 x 200 MB, JSON report
    python bench/timeline.py --count 5 --size-mb 50 --format html
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare3 import run, warm
from engine import pieces, safetensors_prefix, transformer_shapes

MIB = 1 << 20


def _header(shapes: list[tuple[str, tuple[int, ...]]], step: int) -> tuple[bytes, int]:
    """A float32 file's leading bytes (its step in the metadata) and its data size."""
    head = safetensors_prefix(shapes, "F32", 4, metadata={"global_step": str(step)})
    return head, sum(int(np.prod(shape)) for _, shape in shapes) * 4


def write_run(d: Path, count: int, size_mb: float) -> list[Path]:
    """Write ``count`` checkpoints into ``d``; each from the previous one, streamed."""
    shapes = sorted(transformer_shapes(int(size_mb * MIB), 4))
    rng = np.random.default_rng(0)
    paths: list[Path] = []
    for k in range(count):
        head, data_bytes = _header(shapes, k * 100)
        path = d / f"step_{k * 100}.safetensors"
        prev = (
            np.memmap(
                paths[-1], dtype=np.float32, mode="r", offset=len(head), shape=(data_bytes // 4,)
            )
            if paths
            else None
        )
        scale = np.float32(3e-2 if k == count // 2 else 1e-3)
        pos = 0
        with open(path, "wb") as f:
            f.write(head)
            for name, shape in shapes:
                std = np.float32(1.0 / np.sqrt(shape[-1]))
                for n in pieces(int(np.prod(shape))):
                    if prev is None:
                        a = rng.standard_normal(n, dtype=np.float32) * std
                    elif "embed" in name:  # frozen
                        a = np.array(prev[pos : pos + n])
                    else:
                        a = prev[pos : pos + n] + rng.standard_normal(n, dtype=np.float32) * (
                            std * scale
                        )
                    f.write(a.tobytes())
                    pos += n
        del prev
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20, help="checkpoints in the run (default 20)")
    ap.add_argument("--size-mb", type=float, default=200.0, help="size of EACH (default 200)")
    ap.add_argument("--format", choices=["text", "json", "markdown", "html"], default="json")
    ap.add_argument("--dir", help="where to write the run (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args(argv)
    d = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="model-diff-bench-tl-"))
    d.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        (d / "run").mkdir()
        paths = write_run(d / "run", args.count, args.size_mb)
        size = sum(p.stat().st_size for p in paths)
        print(
            f"run: {len(paths)} x {paths[0].stat().st_size / MIB:.0f} MiB fp32 "
            f"({size / MIB:,.0f} MiB, written in {time.perf_counter() - t:.1f} s)"
        )
        warm(paths)
        out = d / f"timeline.{args.format}"
        wall, rss, cpu, _ = run(
            ["timeline", str(d / "run"), "--format", args.format, "-o", str(out)]
        )
        print(f"{'command':<24} {'wall s':>8} {'CPU s':>8} {'peak RSS':>10} {'GB/s in':>8}")
        # every pair reads both of its checkpoints: (N - 1) * 2 files' worth of bytes
        read = size / len(paths) * 2 * (len(paths) - 1)
        print(
            f"{'timeline ' + args.format:<24} {wall:8.2f} {cpu:8.2f} {rss / MIB:7.0f} MiB "
            f"{read / wall / 1e9:8.2f}"
        )
        if args.format == "json":
            data = json.loads(out.read_text())
            print("events:", *(f"  {e['text']}" for e in data["events"]), sep="\n")
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
