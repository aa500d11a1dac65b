"""Three-way benchmark: peak RSS and time of ``model-diff compare3`` and ``model-diff merge``
on a triple of safetensors checkpoints (BASE, OURS, THEIRS), each ``--size-gib`` large.

The triple has the LLaMA-like layout of ``bench/engine.py`` (d_model 1024), streamed to disk
piece by piece in a temporary folder outside the repository: OURS retrains the attention of
every block and the LM head; THEIRS adapts every tensor of the second half of the blocks, so
the attention of the second half changed on both sides (content conflicts: the tensors
compare3 streams a second time for their update statistics and the arithmetic strategies
merge). ``--overlap all`` makes every non-frozen tensor a conflict instead.

Each command runs in a fresh process (``python -m model_diff ...``) with its peak RSS from
``wait4``; the page cache is warmed first so the numbers are about the program, not the disk.
Not part of the test suite. Run from the repository root:

    python bench/compare3.py --size-gib 1
    python bench/compare3.py --size-gib 1 --overlap all --strategies task-arithmetic
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import GIB, pieces, safetensors_prefix, to_dtype, transformer_shapes

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def _block(name: str) -> int | None:
    return int(name.split(".")[2]) if name.startswith("model.layers.") else None


def write_triple(d: Path, size_gib: float, dtype: str, overlap: str) -> dict[str, int]:
    """Write base/ours/theirs.safetensors into ``d``; returns tensor counts per change kind."""
    itemsize = 4 if dtype == "fp32" else 2
    code = "F32" if dtype == "fp32" else "BF16"
    shapes = sorted(transformer_shapes(int(size_gib * GIB), itemsize))
    blocks = 1 + max(b for n, _ in shapes if (b := _block(n)) is not None)

    def ours_changes(name: str) -> bool:
        return overlap == "all" or "self_attn" in name or name == "lm_head.weight"

    def theirs_changes(name: str) -> bool:
        b = _block(name)
        return overlap == "all" or (b is not None and b >= blocks // 2)

    prefix = safetensors_prefix(shapes, code, itemsize)
    rng = np.random.default_rng(0)
    counts = {"unchanged": 0, "ours": 0, "theirs": 0, "conflict": 0}
    files = [open(d / f"{n}.safetensors", "wb") for n in ("base", "ours", "theirs")]  # noqa: SIM115
    try:
        for f in files:
            f.write(prefix)
        for name, shape in shapes:
            std = 1.0 / np.sqrt(shape[-1])
            o, t = ours_changes(name), theirs_changes(name)
            counts["conflict" if o and t else "ours" if o else "theirs" if t else "unchanged"] += 1
            for n in pieces(int(np.prod(shape))):
                a = rng.standard_normal(n, dtype=np.float32) * np.float32(std)
                files[0].write(to_dtype(a, dtype).tobytes())
                for f, changes in ((files[1], o), (files[2], t)):
                    if changes:
                        delta = rng.standard_normal(n, dtype=np.float32) * np.float32(std * 1e-2)
                        f.write(to_dtype(a + delta, dtype).tobytes())
                    else:
                        f.write(to_dtype(a, dtype).tobytes())
    finally:
        for f in files:
            f.close()
    return counts


def warm(paths: list[Path]) -> None:
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(view):
                pass


def run(args: list[str]) -> tuple[float, int, float, int]:
    """(wall s, peak RSS bytes, CPU s, exit code) of ``python -m model_diff ARGS``."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_diff", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if code not in (0, 1):
        sys.exit(f"model-diff {args[0]} failed (exit {code}):\n{err}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=1.0, help="size of EACH file (default 1)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--overlap", choices=["attention", "all"], default="attention")
    ap.add_argument(
        "--strategies",
        default="task-arithmetic,ties",
        help="merge strategies to run, comma-separated (default: task-arithmetic,ties)",
    )
    ap.add_argument("--dir", help="where to write the triple (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args(argv)
    d = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="model-diff-bench3-"))
    d.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        counts = write_triple(d, args.size_gib, args.dtype, args.overlap)
        paths = [d / f"{n}.safetensors" for n in ("base", "ours", "theirs")]
        size = sum(p.stat().st_size for p in paths)
        print(
            f"triple: 3 x {paths[0].stat().st_size / GIB:.2f} GiB {args.dtype}, "
            f"{sum(counts.values())} tensors {counts} (written in {time.perf_counter() - t:.1f} s)"
        )
        warm(paths)
        jobs = [
            (
                "compare3",
                ["compare3", *map(str, paths), "--format", "json", "-o", str(d / "r.json")],
            )
        ]
        for s in filter(None, args.strategies.split(",")):
            out = d / f"merged-{s}.safetensors"
            jobs.append(
                (f"merge {s}", ["merge", *map(str, paths), "-o", str(out), "--strategy", s])
            )
        print(f"{'command':<24} {'wall s':>8} {'CPU s':>8} {'peak RSS':>10} {'GB/s in':>8}")
        for label, job in jobs:
            wall, rss, cpu, code = run(job)
            print(
                f"{label:<24} {wall:8.2f} {cpu:8.2f} {rss / MIB:7.0f} MiB {size / wall / 1e9:8.2f}"
                + ("" if code == 0 else f"  (exit {code})")
            )
            for p in d.glob("merged-*.safetensors"):
                p.unlink()
        readiness = json.loads((d / "r.json").read_text())["readiness"]
        print(f"compare3 readiness: {readiness}")
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
