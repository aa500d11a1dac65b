"""Issue 13, acceptance 4: rows are compared across a shape change only for a vocabulary
resize (an embedding or output head whose trailing dimensions match). A tiny vs a full
release of one network (channels 256 -> 1024) yields no metric, insight or top-changed
entry built from a partial overlap; embedding rows 30522 -> 30530 still report the rows
compared and added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_diff.diff import ChangeType, DiffConfig
from model_diff.formats import open_checkpoint
from model_diff.pipeline import compare
from model_diff.toy import save_safetensors

torch = pytest.importorskip("torch")


class _ConvNet(torch.nn.Module):  # type: ignore[misc]
    """One network at two widths: stem conv + BN, two 1x1 conv blocks, a classifier."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, width, 3)
        self.bn = torch.nn.BatchNorm2d(width)
        self.blocks = torch.nn.ModuleList(torch.nn.Conv2d(width, width, 1) for _ in range(2))
        self.fc = torch.nn.Linear(width, 10)


def _save(path: Path, width: int, seed: int) -> Path:
    torch.manual_seed(seed)
    net = _ConvNet(width)
    with torch.no_grad():  # trained BN statistics, so they are not constant
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    torch.save(net.state_dict(), path)
    return path


def _compare(old: Path, new: Path) -> Any:
    with open_checkpoint(old) as a, open_checkpoint(new) as b:
        return compare(a, b, DiffConfig(include_unchanged=True))


def test_tiny_vs_full_network_has_no_partial_overlap_anywhere(tmp_path: Path) -> None:
    """Channels 256 -> 1024: every reshaped tensor is shape_changed with no metric; no
    insight (but the shape-changed one), no top-changed entry and no Summary figure
    comes from them."""
    result = _compare(_save(tmp_path / "tiny.pt", 256, 0), _save(tmp_path / "full.pt", 1024, 1))
    shaped = {d.name: d for d in result.diffs if d.change_type is ChangeType.SHAPE_CHANGED}
    # stem.weight [C,3,3,3], stem.bias/bn.* [C]: the first axis alone changed, the trailing
    # dimensions kept: exactly what the old rule compared over the first 256 rows
    assert {"stem.weight", "stem.bias", "bn.weight", "bn.running_mean"} <= set(shaped)
    for d in shaped.values():
        assert d.overlap_rows is None and d.added_rows is None
        assert (d.l2_diff, d.relative_change, d.cosine_sim, d.sign_flip_ratio) == (None,) * 4
        assert d.old_stats is not None and d.new_stats is not None  # each side still checked
    s = result.summary
    assert not set(s.top_changed_layers) & set(shaped)
    measured = [
        d.relative_change
        for d in result.diffs
        if d.change_type is ChangeType.MODIFIED and d.relative_change is not None
    ]
    assert s.max_relative_change == max(measured)  # fc.bias only: the one tensor kept
    for ins in result.analysis.to_dict()["insights"]:
        if ins["code"] != "shape-changed":
            assert not set(ins["evidence"].get("tensors", [])) & set(shaped), ins["code"]
    shape_ins = next(
        i for i in result.analysis.to_dict()["insights"] if i["code"] == "shape-changed"
    )
    assert "rows" not in shape_ins["description"]
    text = result.report("text", old_name="tiny", new_name="full")
    assert "overlap" not in text


def test_vocabulary_resize_still_compares_rows(tmp_path: Path) -> None:
    """Embedding rows 30522 -> 30530 (BERT + 8 tokens), trailing dimension kept: the 30522
    shared rows are compared and the 8 new ones counted; the report says so."""
    rng = np.random.default_rng(0)
    words = rng.standard_normal((30522, 32)).astype(np.float32)
    bias = rng.standard_normal(30522).astype(np.float32)
    other = rng.standard_normal((32, 32)).astype(np.float32)
    old = {
        "bert.embeddings.word_embeddings.weight": words,
        "cls.predictions.bias": bias,
        "bert.encoder.layer.0.output.dense.weight": other,
    }
    grown = {
        "bert.embeddings.word_embeddings.weight": np.vstack(
            [words * np.float32(1.001), rng.standard_normal((8, 32)).astype(np.float32)]
        ),
        "cls.predictions.bias": np.concatenate([bias, np.zeros(8, np.float32)]),
        "bert.encoder.layer.0.output.dense.weight": other + np.float32(0.01),
    }
    save_safetensors(tmp_path / "a.safetensors", old)
    save_safetensors(tmp_path / "b.safetensors", grown)
    result = _compare(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    by = {d.name: d for d in result.diffs}
    emb = by["bert.embeddings.word_embeddings.weight"]
    assert emb.change_type is ChangeType.SHAPE_CHANGED
    assert (emb.overlap_rows, emb.added_rows) == (30522, 8)
    assert emb.relative_change == pytest.approx(0.001, rel=1e-3)
    assert by["cls.predictions.bias"].overlap_rows == 30522
    assert by["cls.predictions.bias"].relative_change == 0.0
    shape_ins = next(
        i for i in result.analysis.to_dict()["insights"] if i["code"] == "shape-changed"
    )
    assert "vocabulary resize, +8 rows" in shape_ins["description"]
    assert "overlap rel.change 0.1%" in result.report("text", old_name="a", new_name="b")
