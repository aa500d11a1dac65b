"""Every public field of the original API's dataclasses reads, with the value it promised."""

from __future__ import annotations

import math

import numpy as np

from model_diff import DiffConfig, ModelDiff
from model_diff.checkpoint import Checkpoint, from_arrays


def _pair() -> tuple[Checkpoint, Checkpoint]:
    rng = np.random.default_rng(0)
    old = {
        "layers.0.attn.weight": rng.standard_normal((4, 4)).astype(np.float32),
        "layers.0.attn.bias": np.zeros(4, np.float32),
        "layers.1.mlp.weight": rng.standard_normal((4, 4)).astype(np.float32),
        "embed.weight": np.array([[0.0, 1.0], [2.0, 0.0]], np.float32),
        "removed.weight": np.ones(3, np.float32),
    }
    new = dict(old)
    new["layers.0.attn.weight"] = old["layers.0.attn.weight"] * 1.5  # relative change 0.5
    new["layers.1.mlp.weight"] = old["layers.1.mlp.weight"] + 0.01  # small change
    del new["removed.weight"]
    new["added.weight"] = np.full(2, 3.0, np.float32)
    return from_arrays(old), from_arrays(new)


def test_tensor_info_original_fields() -> None:
    """TensorInfo.num_elements, size_bytes, min_val, max_val, sparsity are the tensor's."""
    old, _ = _pair()
    info = old.tensor_info["embed.weight"]
    assert info.num_elements == 4 and info.size_bytes == 16
    assert info.min_val == 0.0 and info.max_val == 2.0 and info.sparsity == 0.5
    assert old.get_info("embed.weight") == info
    assert old.get_info("nope") is None
    assert old.get_tensor("embed.weight").tolist() == [[0.0, 1.0], [2.0, 0.0]]
    assert old.get_layers_by_pattern(r"^layers\.\d+\.attn") == [
        "layers.0.attn.bias",
        "layers.0.attn.weight",
    ]


def test_parameter_diff_original_fields() -> None:
    """old_info/new_info describe each side; changed_elements counts |d| > threshold among
    total_elements; added/removed tensors have one side only."""
    old, new = _pair()
    diffs, _ = ModelDiff(DiffConfig(include_unchanged=True)).diff(old, new)
    by = {d.name: d for d in diffs}
    attn = by["layers.0.attn.weight"]
    assert attn.total_elements == 16
    w = old.tensors["layers.0.attn.weight"].array()
    assert attn.changed_elements == int(np.count_nonzero(np.abs(w * 0.5) > 1e-6))
    assert attn.old_info is not None and attn.new_info is not None
    assert attn.old_info.shape == (4, 4) and attn.old_info.dtype == "float32"
    assert attn.old_info.size_bytes == 64
    assert math.isclose(attn.new_info.max_val or 0, float(w.max() * 1.5), rel_tol=1e-6)
    assert by["added.weight"].old_info is None and by["added.weight"].new_info is not None
    assert by["added.weight"].new_info.mean == 3.0
    assert by["added.weight"].changed_elements is None
    assert by["removed.weight"].new_info is None and by["removed.weight"].total_elements == 3
    assert by["layers.0.attn.bias"].changed_elements == 0


def test_diff_summary_original_fields() -> None:
    """total_parameters_old/new count elements; total_l2_diff sums the compared tensors'
    l2; most/least_changed_layers rank layers (name less its last part)."""
    old, new = _pair()
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True, top_k_layers=2)).diff(old, new)
    assert summary.total_parameters_old == 16 + 4 + 16 + 4 + 3
    assert summary.total_parameters_new == 16 + 4 + 16 + 4 + 2
    l2 = [d.l2_diff for d in diffs if d.l2_diff is not None]
    assert summary.total_l2_diff is not None and math.isclose(summary.total_l2_diff, math.fsum(l2))
    assert summary.most_changed_layers == ["layers.0.attn", "layers.1.mlp"]
    assert summary.least_changed_layers == ["embed", "layers.1.mlp"]
    # kept out of the JSON the reports write (unchanged format), present for the API
    assert "most_changed_layers" not in summary.to_dict()
