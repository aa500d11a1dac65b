"""The HuggingFace folder writer: shards and index rewritten consistently, other files copied."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from model_diff import merge_checkpoints
from model_diff.errors import ModelDiffError, UnwritableCheckpointError
from model_diff.formats import open_checkpoint
from model_diff.toy import save_safetensors
from tests.model_diff.formats.factories import save_hf_dir

from .conftest import same


def _states() -> tuple[dict[str, np.ndarray], ...]:
    r = np.random.default_rng(7)
    base = {f"layers.{i}.w": r.standard_normal((3, 2)).astype(np.float32) for i in range(6)}
    ours = dict(base)
    ours["layers.0.w"] = base["layers.0.w"] + 1
    theirs = dict(base, **{"layers.3.w": base["layers.3.w"] * 2, "zz.new": np.ones(4, np.float32)})
    for gone in ("layers.1.w", "layers.4.w"):  # the second of three shards (1 and 4) empties
        del theirs[gone]
    return base, ours, theirs


def _merged(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    want = {k: v for k, v in ours.items() if k in theirs}
    return dict(want, **{"layers.3.w": theirs["layers.3.w"], "zz.new": theirs["zz.new"]})


def _extras(d: Path) -> None:
    """Other files: a tokenizer linked into a blob store (as a Hugging Face cache snapshot
    holds it), a folder, and a clone's .git (never copied)."""
    blob = d.parent / "blobs" / "abc123"
    blob.parent.mkdir(exist_ok=True)
    blob.write_text('{"tok": 1}')
    (d / "tokenizer.json").symlink_to(os.path.relpath(blob, d))
    (d / "sub").mkdir()
    (d / "sub" / "notes.md").write_text("hello\n")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref: refs/heads/main\n")


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_sharded_folder_merges_into_consistent_shards_and_index(
    tmp_path: Path, weights: str
) -> None:
    if weights == "bin":
        pytest.importorskip("torch")
    base, ours, theirs = _states()
    dirs = {}
    for name, st in (("base", base), ("ours", ours), ("theirs", theirs)):
        dirs[name] = save_hf_dir(
            tmp_path / name, st, shards=3, weights=weights, config={"model_type": name}
        )
    _extras(dirs["ours"])
    out = tmp_path / "merged"
    result = merge_checkpoints(dirs["base"], dirs["ours"], dirs["theirs"], out)
    assert result.written and result.format == "huggingface"
    want = _merged(ours, theirs)
    stem, ext = ("model", ".safetensors") if weights == "safetensors" else ("pytorch_model", ".bin")
    index = json.loads((out / f"{stem}{ext}.index.json").read_text())
    assert set(index["weight_map"]) == set(want)
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in want.values())
    ours_index = json.loads((dirs["ours"] / f"{stem}{ext}.index.json").read_text())
    for name in want:  # every tensor stays in OURS' shard; the new one goes to the last shard
        if name != "zz.new":
            assert index["weight_map"][name] == ours_index["weight_map"][name]
    shards = sorted(set(ours_index["weight_map"].values()))
    assert index["weight_map"]["zz.new"] == shards[-1]
    assert shards[1] not in index["weight_map"].values()  # emptied: dropped, not written
    assert not (out / shards[1]).exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            *set(index["weight_map"].values()),
            f"{stem}{ext}.index.json",
            "config.json",
            "tokenizer.json",
            "sub",
        ]
    )
    assert (out / "config.json").read_bytes() == (dirs["ours"] / "config.json").read_bytes()
    assert (out / "sub" / "notes.md").read_text() == "hello\n"
    tokenizer = out / "tokenizer.json"
    assert not tokenizer.is_symlink() and tokenizer.read_text() == '{"tok": 1}'
    with open_checkpoint(out) as ckpt:  # re-opened by model-diff
        assert set(ckpt.tensors) == set(want)
        for k, v in want.items():
            assert same(ckpt.tensors[k].array().reshape(v.shape), v), k
        assert ckpt.config == {"model_type": "ours"}


def test_single_file_folder(tmp_path: Path) -> None:
    base, ours, theirs = _states()
    dirs = {
        n: save_hf_dir(tmp_path / n, s)
        for n, s in (("base", base), ("ours", ours), ("theirs", theirs))
    }
    out = tmp_path / "merged"
    merge_checkpoints(dirs["base"], dirs["ours"], dirs["theirs"], out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    with open_checkpoint(out) as ckpt:
        assert "zz.new" in ckpt.tensors and "layers.1.w" not in ckpt.tensors
        assert ckpt.metadata == {"format": "pt"}


def test_folder_output_must_be_new(tmp_path: Path) -> None:
    base, ours, theirs = _states()
    dirs = {
        n: save_hf_dir(tmp_path / n, s)
        for n, s in (("base", base), ("ours", ours), ("theirs", theirs))
    }
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ModelDiffError, match="already exists"):
        merge_checkpoints(dirs["base"], dirs["ours"], dirs["theirs"], out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model-diff")]


def test_folder_with_two_copies_of_the_weights_is_refused(tmp_path: Path) -> None:
    base, _, _ = _states()
    d = save_hf_dir(tmp_path / "m", base)
    save_safetensors(d / "adapter_model.safetensors", {"x": np.zeros(1, np.float32)})
    with pytest.raises(UnwritableCheckpointError, match="stale copy"):
        merge_checkpoints(d, d, d, tmp_path / "out")
    assert not (tmp_path / "out").exists()
