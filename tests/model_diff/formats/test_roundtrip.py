"""Acceptance 3: the same weights in every format read back identically and diff identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_diff.diff import compare_checkpoints
from model_diff.formats import open_checkpoint
from model_diff.toy import fine_tune, toy_transformer
from tests.model_diff.formats.factories import WRITERS

torch = pytest.importorskip("torch")

BASE = toy_transformer(n_blocks=2, d_model=16, vocab=32)
TUNED = fine_tune(BASE)
FORMATS = list(WRITERS)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(old, new) paths of the toy pair in every format."""
    out: dict[str, tuple[Path, Path]] = {}
    for fmt, write in WRITERS.items():
        old_dir = tmp_path_factory.mktemp(f"{fmt}-old")
        new_dir = tmp_path_factory.mktemp(f"{fmt}-new")
        out[fmt] = (write(old_dir, BASE), write(new_dir, TUNED))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_the_same_bytes(
    written: dict[str, tuple[Path, Path]], fmt: str
) -> None:
    """TensorRef.array() gives the saved bytes, names, shapes and dtypes in every format."""
    with open_checkpoint(written[fmt][0]) as ckpt:
        assert set(ckpt.tensors) == set(BASE)
        for name, want in BASE.items():
            ref = ckpt[name]
            assert ref.shape == want.shape and ref.dtype.name == "float32"
            assert ref.array().tobytes() == want.tobytes(), (fmt, name)


def _metrics(diffs: list[Any]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in diffs]


def test_every_format_gives_identical_diff_metrics(written: dict[str, tuple[Path, Path]]) -> None:
    """compare_checkpoints yields the same ParameterDiffs (every metric) whatever the format."""
    results = {
        fmt: compare_checkpoints(old, new, include_unchanged=True)
        for fmt, (old, new) in written.items()
    }
    ref_diffs, ref_summary = results["safetensors"]
    assert any(d.is_changed for d in ref_diffs) and any(not d.is_changed for d in ref_diffs)
    ignore = {"old_path", "new_path", "old_format", "new_format"}
    ref_sum = {k: v for k, v in ref_summary.to_dict().items() if k not in ignore}
    for fmt, (diffs, summary) in results.items():
        assert _metrics(diffs) == _metrics(ref_diffs), fmt
        assert {k: v for k, v in summary.to_dict().items() if k not in ignore} == ref_sum, fmt


def test_bf16_pt_and_safetensors_agree(tmp_path: Path) -> None:
    """bfloat16 weights saved as .pt and as safetensors give identical bytes and metrics."""
    import ml_dtypes

    old = {k: v.astype(ml_dtypes.bfloat16) for k, v in BASE.items()}
    new = {k: v.astype(ml_dtypes.bfloat16) for k, v in TUNED.items()}
    paths: dict[str, tuple[Path, Path]] = {}
    for fmt in ("safetensors", "pt"):
        (tmp_path / f"{fmt}-o").mkdir()
        (tmp_path / f"{fmt}-n").mkdir()
        paths[fmt] = (
            WRITERS[fmt](tmp_path / f"{fmt}-o", old),
            WRITERS[fmt](tmp_path / f"{fmt}-n", new),
        )
    with open_checkpoint(paths["pt"][0]) as a, open_checkpoint(paths["safetensors"][0]) as b:
        for name in BASE:
            assert a[name].dtype.name == "bfloat16"
            want = np.ascontiguousarray(old[name]).tobytes()
            assert a[name].array().tobytes() == b[name].array().tobytes() == want
    st = compare_checkpoints(*paths["safetensors"])[0]
    pt = compare_checkpoints(*paths["pt"])[0]
    assert _metrics(st) == _metrics(pt) and st
