"""Benchmark: what pairing tensors across names (model_diff.alignment) costs.

Two measurements:

1. **Names only**: ``pair_checkpoints`` on metadata-only checkpoints whose names differ by a
   Lightning ``model.`` prefix and spaces vs underscores (one composite rule), for LLM-sized
   name sets (``--layers`` blocks of 9 tensors). No tensor data is read.
2. **Whole diff** of two safetensors files of ``--tensors`` float32 tensors of
   ``--elements`` each, in three variants of the new file: the same names; every name
   respelt (spaces -> underscores: paired by a rule, no extra read); every name replaced by
   an unrelated one (paired as renames by identical bytes: each candidate hashed once more).
   Run with a warm page cache (each pair is diffed once untimed first); best of 3 runs.

    python bench/pairing.py [--layers 80] [--tensors 32] [--elements 1048576]

Numbers go to stdout (a Markdown table) and to ``bench/out/pairing.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_diff.alignment import pair_checkpoints  # noqa: E402
from model_diff.checkpoint import Checkpoint, TensorRef  # noqa: E402
from model_diff.diff import ChangeType, DiffConfig, ModelDiff  # noqa: E402
from model_diff.dtypes import from_name  # noqa: E402
from model_diff.formats import open_checkpoint  # noqa: E402
from model_diff.toy import save_safetensors  # noqa: E402

#: Each timing is the best of this many runs (the machine is shared).
REPEATS = 3
PARTS = (
    "self attn.q proj.weight",
    "self attn.k proj.weight",
    "self attn.v proj.weight",
    "self attn.o proj.weight",
    "mlp.gate proj.weight",
    "mlp.up proj.weight",
    "mlp.down proj.weight",
    "input layernorm.weight",
    "post attention layernorm.weight",
)


def _no_data() -> np.ndarray:
    raise AssertionError("pairing by names must not read tensor data")


def _names_only(layers: int) -> dict[str, float]:
    f32 = from_name("float32")
    old_names = [f"model.layers.{i}.{p}" for i in range(layers) for p in PARTS]
    old = Checkpoint("old", "memory", {n: TensorRef(n, f32, (8,), _no_data) for n in old_names})
    new_names = [n.removeprefix("model.").replace(" ", "_") for n in old_names]
    new = Checkpoint("new", "memory", {n: TensorRef(n, f32, (8,), _no_data) for n in new_names})
    seconds = math.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        pairing = pair_checkpoints(old, new)
        seconds = min(seconds, time.perf_counter() - start)
    assert [r.count for r in pairing.rules] == [len(old_names)], pairing.rules
    return {"tensors": len(old_names), "seconds": seconds}


def _timed_diff(a: Path, b: Path) -> tuple[float, dict[str, int]]:
    with open_checkpoint(a) as old, open_checkpoint(b) as new:
        ModelDiff(DiffConfig(low_rank=False)).diff(old, new)  # warm the page cache
        seconds = math.inf
        for _ in range(REPEATS):
            start = time.perf_counter()
            cfg = DiffConfig(low_rank=False, include_unchanged=True)
            diffs, _ = ModelDiff(cfg).diff(old, new)
            seconds = min(seconds, time.perf_counter() - start)
    kinds: dict[str, int] = {}
    for d in diffs:
        kinds[d.change_type.value] = kinds.get(d.change_type.value, 0) + 1
    return seconds, kinds


def _whole_diff(tensors: int, elements: int, workdir: Path) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(elements).astype(np.float32) for _ in range(tensors)]
    spaced = {f"block {i}.conv weight": a for i, a in enumerate(arrays)}
    save_safetensors(workdir / "old.safetensors", spaced)
    variants = {
        "same names": spaced,
        "respelt (rule)": {k.replace(" ", "_"): a for k, a in spaced.items()},
        "renamed (bytes)": {f"unrelated_{i:03d}": a for i, a in enumerate(arrays)},
    }
    rows = []
    for label, state in variants.items():
        path = workdir / f"{label.split()[0]}.safetensors"
        save_safetensors(path, state)
        seconds, kinds = _timed_diff(workdir / "old.safetensors", path)
        expected = ChangeType.RENAMED.value if "bytes" in label else ChangeType.UNCHANGED.value
        assert kinds == {expected: tensors}, kinds
        rows.append(
            {
                "variant": label,
                "seconds": seconds,
                "mib_per_side": tensors * elements * 4 / 2**20,
                "kinds": kinds,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=80)
    ap.add_argument("--tensors", type=int, default=32)
    ap.add_argument("--elements", type=int, default=1 << 20)
    args = ap.parse_args()
    names = [_names_only(n) for n in (args.layers, args.layers * 8)]
    with tempfile.TemporaryDirectory(prefix="pairing-") as tmp:
        whole = _whole_diff(args.tensors, args.elements, Path(tmp))
    print("| names (rule: prefix + separator) | pairing time |")
    print("| ---: | ---: |")
    for r in names:
        print(f"| {r['tensors']:,} | {r['seconds'] * 1000:.1f} ms |")
    print()
    print("| new file | MiB per side | diff time (warm cache) |")
    print("| --- | ---: | ---: |")
    for w in whole:
        print(f"| {w['variant']} | {w['mib_per_side']:.0f} | {w['seconds']:.3f} s |")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "pairing.json").write_text(json.dumps({"names": names, "whole": whole}, indent=2))


if __name__ == "__main__":
    main()
