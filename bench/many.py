"""`model-diff compare` of a pair of many small tensors: where a fine-cut checkpoint's time goes.

A mixture-of-experts checkpoint can hold tens of thousands of tensors, each small: there the
cost per tensor (Python, holding the GIL) is what a compare pays, not the bytes. This script
writes such a pair (``--tensors`` float32 matrices of ``--shape``, named like expert weights,
every 7th identical, the rest perturbed) into a temporary folder and runs ``bench/phases.py``
on it: start-up, opening both headers, the pass, the budgeted low-rank analysis, the analysis
and the JSON report, per fresh process. Not part of the test suite. Run from the repository
root:

    python bench/many.py --tensors 20000 --shape 8x16 --runs 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_diff.toy import save_safetensors  # noqa: E402  (after the path is set)


def write_pair(folder: Path, tensors: int, shape: tuple[int, int]) -> tuple[Path, Path]:
    """``old`` and ``new`` safetensors files of ``tensors`` matrices of ``shape``."""
    rng = np.random.default_rng(0)
    old: dict[str, np.ndarray] = {}
    new: dict[str, np.ndarray] = {}
    for i in range(tensors):
        block, expert = divmod(i // 3, 64)
        name = f"model.layers.{block}.mlp.experts.{expert}.w{i % 3 + 1}.weight"
        a = rng.standard_normal(shape).astype(np.float32)
        old[name] = a
        new[name] = (
            a if i % 7 == 0 else a + np.float32(0.01) * rng.standard_normal(shape, np.float32)
        )
    paths = folder / "old.safetensors", folder / "new.safetensors"
    save_safetensors(paths[0], old)
    save_safetensors(paths[1], new)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tensors", type=int, default=20000, help="matrices per file (default 20000)")
    ap.add_argument("--shape", default="8x16", help="ROWSxCOLS of each matrix (default 8x16)")
    ap.add_argument("--runs", type=int, default=3, help="fresh processes (default 3)")
    args = ap.parse_args(argv)
    rows, cols = (int(x) for x in args.shape.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="model-diff-many-") as tmp:
        old, new = write_pair(Path(tmp), args.tensors, (rows, cols))
        print(f"{args.tensors} tensors of {rows} x {cols} float32 per file", flush=True)
        cmd = [sys.executable, str(ROOT / "bench" / "phases.py"), str(old), str(new)]
        return subprocess.run([*cmd, "--runs", str(args.runs)], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
