"""Shared helpers of the writer tests: merge three states and read back what was written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def member_data_offset(path: Path, member: str) -> int:
    """Where a zip member's bytes start (after its local header, whose extra field may differ
    from the central directory's)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = path.read_bytes()
    o = info.header_offset
    name_len = int.from_bytes(raw[o + 26 : o + 28], "little")
    extra_len = int.from_bytes(raw[o + 28 : o + 30], "little")
    return o + 30 + name_len + extra_len


def states() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """base, ours (changes ``a``, removes ``d``), theirs (changes ``b``, adds ``e``)."""
    r = np.random.default_rng(3)
    base = {
        "a": r.standard_normal((4, 3)).astype(np.float32),
        "b": r.standard_normal(7).astype(np.float64),
        "c": np.arange(6, dtype=np.int32).reshape(2, 3),
        "d": r.standard_normal(2).astype(np.float16),
        "flag": np.array([True, False]),
    }
    ours = dict(base, a=base["a"] + 1)
    del ours["d"]
    theirs = dict(base, b=base["b"] * 2, e=np.full((2, 2), 5, np.int64))
    return base, ours, theirs


def expected() -> dict[str, np.ndarray]:
    base, ours, theirs = states()
    return {
        "a": ours["a"],
        "b": theirs["b"],
        "c": base["c"],
        "e": theirs["e"],
        "flag": base["flag"],
    }


def same(x: np.ndarray, y: np.ndarray) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
