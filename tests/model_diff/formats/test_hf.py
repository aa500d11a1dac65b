"""The HuggingFace directory reader: single and sharded weights, adapters, config, leftovers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model_diff.errors import CheckpointError
from model_diff.formats import open_checkpoint
from model_diff.toy import save_safetensors, toy_transformer
from tests.model_diff.formats.factories import save_hf_dir

STATE = toy_transformer(n_blocks=2, d_model=8, vocab=16)


def same_bytes(ckpt, state) -> bool:  # type: ignore[no-untyped-def]
    return set(ckpt.tensors) == set(state) and all(
        ckpt[n].array().tobytes() == state[n].tobytes() for n in state
    )


def test_single_file_dir_reads_weights_config_and_metadata(tmp_path: Path) -> None:
    """model.safetensors + config.json: tensors, Checkpoint.config, the file's metadata."""
    d = save_hf_dir(tmp_path / "m", STATE, config={"model_type": "llama", "hidden_size": 8})
    with open_checkpoint(d) as ckpt:
        assert ckpt.format == "huggingface" and ckpt.path == str(d)
        assert ckpt.config == {"model_type": "llama", "hidden_size": 8}
        assert ckpt.metadata == {"format": "pt"}
        assert same_bytes(ckpt, STATE)


def test_sharded_index_spans_all_shards_in_one_checkpoint(tmp_path: Path) -> None:
    """model.safetensors.index.json: every shard opened once, one Checkpoint, index metadata."""
    d = save_hf_dir(tmp_path / "m", STATE, shards=3)
    with open_checkpoint(d) as ckpt:
        assert same_bytes(ckpt, STATE)
        sources = {ref.source for ref in ckpt.tensors.values()}
        assert len(sources) == 3 and all("-of-00003.safetensors" in s for s in sources)
        assert ckpt.metadata["total_size"] == str(sum(a.nbytes for a in STATE.values()))


def test_sharded_pytorch_bin_index_is_followed(tmp_path: Path) -> None:
    """pytorch_model.bin.index.json with .bin shards reads the same tensors."""
    pytest.importorskip("torch")
    with open_checkpoint(save_hf_dir(tmp_path / "m", STATE, shards=2, weights="bin")) as ckpt:
        assert same_bytes(ckpt, STATE)


def test_safetensors_preferred_over_bin_and_leftovers_ignored(tmp_path: Path) -> None:
    """With both weight files present safetensors wins; trainer files are never opened."""
    d = save_hf_dir(tmp_path / "m", STATE)
    # Unreadable junk under every trainer file name: opening any of them would fail.
    for junk in (
        "pytorch_model.bin",
        "training_args.bin",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state_0.pth",
        "trainer_state.json",
    ):
        (d / junk).write_bytes(b"junk that no reader accepts")
    with open_checkpoint(d) as ckpt:
        assert same_bytes(ckpt, STATE)


def test_adapter_dir_without_config_json(tmp_path: Path) -> None:
    """A PEFT adapter folder (adapter_model.safetensors + adapter_config.json) is readable."""
    lora = {"base_model.model.layers.0.q_proj.lora_A.weight": np.ones((4, 8), np.float32)}
    d = save_hf_dir(tmp_path / "a", lora, adapter=True, config={"peft_type": "LORA", "r": 4})
    assert not (d / "config.json").exists()
    with open_checkpoint(d) as ckpt:
        assert ckpt.config == {"peft_type": "LORA", "r": 4}
        assert same_bytes(ckpt, lora)


def test_index_referencing_a_missing_shard_names_it(tmp_path: Path) -> None:
    """A deleted shard is a clear error naming the shard and telling to download it."""
    d = save_hf_dir(tmp_path / "m", STATE, shards=2)
    (d / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors.*missing"):
        open_checkpoint(d)


def test_index_naming_a_tensor_its_shard_lacks_is_an_error(tmp_path: Path) -> None:
    """weight_map entries must exist in their shard."""
    d = save_hf_dir(tmp_path / "m", STATE, shards=2)
    index = json.loads((d / "model.safetensors.index.json").read_text())
    index["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"ghost\.weight"):
        open_checkpoint(d)


def test_index_shard_outside_the_directory_is_refused(tmp_path: Path) -> None:
    """A shard path that climbs out of the model directory is rejected, not followed."""
    d = save_hf_dir(tmp_path / "m", STATE, shards=2)
    save_safetensors(tmp_path / "outside.safetensors", STATE)
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {n: "../outside.safetensors" for n in STATE}})
    )
    with pytest.raises(CheckpointError, match="invalid shard"):
        open_checkpoint(d)


def test_directory_without_weights_lists_what_it_looked_for(tmp_path: Path) -> None:
    """An empty (or unrelated) directory is an error naming the files it searched for."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "training_args.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(tmp_path / "d")
    msg = str(info.value)
    assert "model.safetensors" in msg and "pytorch_model.bin" in msg and "adapter_model" in msg


def test_closing_a_sharded_checkpoint_closes_every_shard(tmp_path: Path) -> None:
    """After close() no shard's mapping can be read any more (each shard was closed)."""
    d = save_hf_dir(tmp_path / "m", STATE, shards=3)
    ckpt = open_checkpoint(d)
    by_shard = {ref.source: ref for ref in ckpt.tensors.values()}
    assert len(by_shard) == 3
    ckpt.close()
    for ref in by_shard.values():
        with pytest.raises(ValueError, match="closed"):
            ref.array()


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "npz", "gguf"])
def test_folder_with_one_checkpoint_file_beside_config_json_is_that_checkpoint(
    tmp_path: Path, fmt: str
) -> None:
    """final.<ext> + config.json (+ trainer leftovers): the file's tensors, the folder's config."""
    from tests.model_diff.formats.factories import WRITERS

    src = tmp_path / "src"
    src.mkdir()
    if fmt == "gguf":
        pytest.importorskip("gguf")
        from tests.model_diff.formats.ggufs import write_llama_gguf

        written = write_llama_gguf(src / "m.gguf", STATE, n_head=2, qtype="F32")
    else:
        if fmt == "pt":
            pytest.importorskip("torch")
        written = WRITERS[fmt](src, STATE)
    d = tmp_path / "run"
    d.mkdir()
    file = d / f"final{written.suffix}"  # not a name the HuggingFace candidates know
    written.rename(file)
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (d / "optimizer.pt").write_bytes(b"junk: a trainer leftover is never opened")
    (d / "notes.txt").write_text("not a checkpoint")
    with open_checkpoint(d) as ckpt, open_checkpoint(file) as direct:
        assert ckpt.format == "huggingface" and ckpt.path == str(d)
        assert ckpt.config == {"model_type": "llama", "hidden_size": 8}
        assert set(ckpt.tensors) == set(direct.tensors) and ckpt.tensors
        for name, ref in direct.tensors.items():
            assert ckpt[name].array().tobytes() == ref.array().tobytes()


def test_folder_with_one_checkpoint_and_no_config_or_several_files_says_what_to_pass(
    tmp_path: Path,
) -> None:
    """Without config.json the folder is not a model: the error names the file to pass;
    several checkpoint files beside config.json name the timeline command."""
    d = tmp_path / "one"
    d.mkdir()
    save_safetensors(d / "model.safetensors.bak.safetensors", STATE)
    with pytest.raises(CheckpointError, match=r"holds one checkpoint file .* no config\.json"):
        open_checkpoint(d)
    many = tmp_path / "many"
    many.mkdir()
    (many / "config.json").write_text("{}")
    for step in (100, 200):
        save_safetensors(many / f"step_{step}.safetensors", STATE)
    with pytest.raises(CheckpointError, match=r"2 checkpoint files .*model-diff timeline"):
        open_checkpoint(many)
