"""The PyTorch reader: safe loading, training-checkpoint unwrapping, dtypes through numpy."""

from __future__ import annotations

import argparse
import mmap
import os
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from model_diff.errors import CheckpointError, UnsafeCheckpointError
from model_diff.formats import open_checkpoint
from tests.model_diff.formats.factories import save_pt, save_training_pt

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

STATE = {
    "embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
    "layers.0.w": (np.linspace(-2, 2, 8)).astype(ml_dtypes.bfloat16),
    "layers.1.w": np.linspace(-2, 2, 8).astype(np.float16),
    "f8a": np.linspace(-2, 2, 8).astype(ml_dtypes.float8_e4m3fn),
    "f8b": np.linspace(-2, 2, 8).astype(ml_dtypes.float8_e5m2),
    "ids": np.arange(5, dtype=np.int64),
    "mask": np.array([True, False, True]),
}


def assert_same(ckpt_tensors: dict, state: dict) -> None:
    assert set(ckpt_tensors) == set(state)
    for name, want in state.items():
        got = ckpt_tensors[name].array()
        assert got.dtype == want.dtype, name
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), name
        assert ckpt_tensors[name].shape == want.shape


def test_plain_state_dict_every_torch_dtype_round_trips(tmp_path: Path) -> None:
    """bf16, f16, float8 (both), int64 and bool tensors come back bit-exact as numpy."""
    with open_checkpoint(save_pt(tmp_path / "m.pt", STATE)) as ckpt:
        assert ckpt.format == "pytorch" and ckpt.skipped == []
        assert_same(ckpt.tensors, STATE)


def test_legacy_non_zip_pickle_is_read(tmp_path: Path) -> None:
    """A pre-1.6 (non-zip) torch.save file loads without mmap, weights_only all the same."""
    # torch itself cannot load float8 back from the legacy format, so those are left out.
    state = {k: v for k, v in STATE.items() if not k.startswith("f8")}
    with open_checkpoint(save_pt(tmp_path / "m.pth", state, legacy=True)) as ckpt:
        assert_same(ckpt.tensors, state)


def test_arrays_share_memory_with_the_loaded_tensors(tmp_path: Path) -> None:
    """Contiguous tensors are handed out without a copy (numpy views torch's mmap'd storage)."""
    with open_checkpoint(save_pt(tmp_path / "m.pt", STATE)) as ckpt:
        a = ckpt["embed.weight"].array()
        b = ckpt["embed.weight"].array()
        assert np.shares_memory(a, b) and not a.flags.owndata and not a.flags.writeable


def test_training_checkpoint_is_unwrapped(tmp_path: Path) -> None:
    """{"model_state_dict", "optimizer_state_dict", "epoch"}: weights only; the rest skipped."""
    with open_checkpoint(save_training_pt(tmp_path / "train.pt", STATE)) as ckpt:
        assert_same(ckpt.tensors, STATE)
        assert ckpt.skipped == ["epoch", "optimizer_state_dict"]
        assert ckpt.metadata == {"epoch": "3"}


@pytest.mark.parametrize("key", ["state_dict", "model", "module", "model_state_dict"])
def test_each_wrapper_key_is_unwrapped(tmp_path: Path, key: str) -> None:
    """Weights stored under any of the known wrapper keys are found."""
    with open_checkpoint(save_pt(tmp_path / "m.pt", STATE, wrap=key)) as ckpt:
        assert set(ckpt.tensors) == set(STATE)


def test_lightning_checkpoint_keeps_version_and_step_as_metadata(tmp_path: Path) -> None:
    """A Lightning .ckpt: state_dict unwrapped; epoch/global_step/version become metadata."""
    extra = {
        "epoch": 2,
        "global_step": 500,
        "pytorch-lightning_version": "2.4.0",
        "optimizer_states": [{"state": {}}],
        "lr_schedulers": [],
        "hyper_parameters": {"lr": 0.1},
    }
    path = save_pt(tmp_path / "last.ckpt", STATE, wrap="state_dict", extra=extra)
    with open_checkpoint(path) as ckpt:
        assert set(ckpt.tensors) == set(STATE)
        assert ckpt.metadata == {
            "epoch": "2",
            "global_step": "500",
            "pytorch-lightning_version": "2.4.0",
        }
        assert ckpt.skipped == sorted(extra)


def test_nested_dicts_of_tensors_are_flattened_with_dots(tmp_path: Path) -> None:
    """{"encoder": {"w": t}} reads as "encoder.w"; non-tensor leaves are skipped by name."""
    obj = {"encoder": {"w": torch.ones(2), "cfg": "x"}, "decoder": {"b": torch.zeros(3)}}
    torch.save(obj, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        assert ckpt.layer_names == ["decoder.b", "encoder.w"]
        assert ckpt.skipped == ["encoder.cfg"]


def test_non_contiguous_tensor_is_made_contiguous(tmp_path: Path) -> None:
    """A transposed (strided) tensor reads in its logical C order."""
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    torch.save({"t": base.t()}, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        assert ckpt["t"].shape == (3, 2)
        assert ckpt["t"].array().tolist() == [0, 3, 1, 4, 2, 5]


def test_unreadable_dtypes_are_skipped_not_guessed(tmp_path: Path) -> None:
    """Complex tensors are listed in skipped; the readable ones still load."""
    torch.save({"c": torch.zeros(2, dtype=torch.complex64), "w": torch.ones(2)}, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        assert ckpt.layer_names == ["w"] and ckpt.skipped == ["c"]


def test_file_without_any_tensor_is_an_error(tmp_path: Path) -> None:
    """A pickle of only scalars/strings is not a checkpoint: clear error listing what it holds."""
    torch.save({"epoch": 1, "note": "hi"}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"holds no tensors .*epoch, note"):
        open_checkpoint(tmp_path / "m.pt")


class _Touch:
    """Pickles to a call of os.system that would create a file on load."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def test_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path: Path) -> None:
    """A crafted pickle calling os.system on load raises UnsafeCheckpointError; no side effect."""
    target = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "x": _Touch(target)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError) as info:
        open_checkpoint(tmp_path / "evil.pt")
    msg = str(info.value)
    assert "--unsafe-pickle" in msg and "system" in msg and str(tmp_path / "evil.pt") in msg
    assert not target.exists()


def test_unsafe_pickle_flag_loads_a_trusted_pickle_with_objects(tmp_path: Path) -> None:
    """With unsafe_pickle=True a checkpoint holding an argparse.Namespace loads; args skipped."""
    torch.save(
        {"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "fairseq.pt"
    )
    with pytest.raises(UnsafeCheckpointError):
        open_checkpoint(tmp_path / "fairseq.pt")
    with open_checkpoint(tmp_path / "fairseq.pt", unsafe_pickle=True) as ckpt:
        assert ckpt.layer_names == ["w"] and ckpt.skipped == ["args"]


def test_truncated_zip_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    """A torch zip cut short raises CheckpointError with a re-save hint, not a torch trace."""
    path = save_pt(tmp_path / "m.pt", STATE)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as info:
        open_checkpoint(path)
    assert "hint:" in str(info.value) and "\n" not in str(info.value)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_release_drops_pages_of_a_memory_mapped_pt(tmp_path: Path) -> None:
    """For a zip .pt (mmap'd by torch) release() gives the tensor's pages back; the data stays
    correct afterwards (re-read from the file)."""
    n = 8 << 20
    torch.save({"w": torch.full((n,), 2.0), "b": torch.ones(3)}, tmp_path / "big.pt")
    with open_checkpoint(tmp_path / "big.pt") as ckpt:
        before = _resident_bytes()
        a = ckpt["w"].array()
        assert float(a.sum(dtype=np.float64)) == 2.0 * n
        touched = _resident_bytes()
        ckpt["w"].release()
        released = _resident_bytes()
        assert touched - before > 24 << 20 and touched - released > 24 << 20
        assert float(a[12345]) == 2.0 and ckpt["b"].array().tolist() == [1.0, 1.0, 1.0]


def test_legacy_pickle_tensors_are_never_madvised(tmp_path: Path) -> None:
    """Tensors read into ordinary memory (non-zip pickle) get no page release: dropping their
    pages would zero them."""
    torch.save(
        {"w": torch.full((4096,), 3.0)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False
    )
    with open_checkpoint(tmp_path / "old.pt") as ckpt:
        assert ckpt["w"]._release is None
        ckpt["w"].release()
        assert ckpt["w"].array().tolist() == [3.0] * 4096
