"""What every writer shares: bounded chunks, atomic output, the one writability test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model_diff.checkpoint import from_arrays
from model_diff.dtypes import from_name
from model_diff.formats import open_checkpoint
from model_diff.merge import merged_tensor
from model_diff.threeway import CHUNK_ELEMENTS
from model_diff.toy import save_safetensors
from model_diff.writers import OutTensor, copy_of, inspect_container, write_checkpoint
from model_diff.writers.base import WRITE_CHUNK


def test_copies_and_merges_stream_in_bounded_chunks(tmp_path: Path) -> None:
    """A tensor several chunks long never goes out in one piece."""
    n = CHUNK_ELEMENTS * 5 + 3
    arrays = {"w": np.arange(n, dtype=np.float32)}
    save_safetensors(tmp_path / "a.safetensors", arrays)
    with open_checkpoint(tmp_path / "a.safetensors") as ckpt:
        ref = ckpt.tensors["w"]
        sizes = [len(c) for c in copy_of(ref).chunks()]
        assert max(sizes) <= WRITE_CHUNK < ref.nbytes and sum(sizes) == ref.nbytes
        merged = merged_tensor("average", ref, ref, ref)
        sizes = [len(c) for c in merged.chunks()]
        assert max(sizes) <= CHUNK_ELEMENTS * 4 and sum(sizes) == ref.nbytes


def test_a_failing_writer_leaves_the_destination_untouched(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "a.safetensors", {"w": np.zeros(4, np.float32)})
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous")

    def broken() -> Iterator[bytes]:
        yield b"\0" * 8
        raise OSError("disk full")

    with open_checkpoint(tmp_path / "a.safetensors") as ckpt:
        container = inspect_container(ckpt)
    t = OutTensor("w", from_name("float32"), (4,), broken)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(container, {"w": t}, out)
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors", "out.safetensors"]


def test_a_source_with_the_wrong_byte_count_is_a_bug_not_a_file(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "a.safetensors", {"w": np.zeros(4, np.float32)})
    with open_checkpoint(tmp_path / "a.safetensors") as ckpt:
        container = inspect_container(ckpt)
    t = OutTensor("w", from_name("float32"), (4,), lambda: [b"\0" * 12])
    with pytest.raises(RuntimeError, match="bug"):
        write_checkpoint(container, {"w": t}, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_in_memory_checkpoints_have_no_container() -> None:
    from model_diff.errors import CheckpointError

    ckpt = from_arrays({"w": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError, match="not read from a file"):
        inspect_container(ckpt)


def test_new_files_get_the_umask_permissions(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "a.safetensors", {"w": np.zeros(4, np.float32)})
    with open_checkpoint(tmp_path / "a.safetensors") as ckpt:
        container = inspect_container(ckpt)
        old = os.umask(0o022)
        try:
            write_checkpoint(
                container, {"w": copy_of(ckpt.tensors["w"])}, tmp_path / "out.safetensors"
            )
        finally:
            os.umask(old)
    assert os.stat(tmp_path / "out.safetensors").st_mode & 0o777 == 0o644
