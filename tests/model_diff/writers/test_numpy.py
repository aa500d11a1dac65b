"""The numpy writers: .npz members (stored and aligned, or deflated as before) and .npy."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from model_diff import merge_checkpoints
from model_diff.errors import UnwritableCheckpointError
from model_diff.formats import open_checkpoint

from .conftest import expected, member_data_offset, same, states


@pytest.mark.parametrize("compressed", [False, True])
def test_merged_npz_loads_with_numpy_in_ours_member_order(tmp_path: Path, compressed: bool) -> None:
    base, ours, theirs = states()
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "base.npz", **base)
    # OURS' members in a chosen order: the merged archive keeps it
    save(tmp_path / "ours.npz", **{k: ours[k] for k in ("flag", "c", "b", "a")})
    np.savez(tmp_path / "theirs.npz", **theirs)
    out = tmp_path / "out.npz"
    result = merge_checkpoints(
        tmp_path / "base.npz", tmp_path / "ours.npz", tmp_path / "theirs.npz", out
    )
    assert result.written and result.format == "numpy"
    want = expected()
    with np.load(out, allow_pickle=False) as z:
        assert list(z.files) == ["flag", "c", "b", "a", "e"]
        assert all(same(z[k], want[k]) for k in want)
    with zipfile.ZipFile(out) as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
    expect = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    assert set(kinds.values()) == {expect}
    if not compressed:  # stored members: the array data is 64-byte aligned (mappable)
        for name in kinds:
            start = member_data_offset(out, name)
            assert start % 64 == 0
            # .npy 1.0: magic + version (8 bytes), header length (2), header (padded by numpy)
            header_len = int.from_bytes(out.read_bytes()[start + 8 : start + 10], "little")
            assert (start + 10 + header_len) % 64 == 0
    with open_checkpoint(out) as ckpt:
        assert all(same(ckpt.tensors[k].array().reshape(want[k].shape), want[k]) for k in want)


def test_merged_npy_is_one_array(tmp_path: Path) -> None:
    b = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "base.npy", b)
    np.save(tmp_path / "ours.npy", b)
    np.save(tmp_path / "theirs.npy", b * 2)
    out = tmp_path / "out.npy"
    merge_checkpoints(tmp_path / "base.npy", tmp_path / "ours.npy", tmp_path / "theirs.npy", out)
    assert same(np.load(out), b * 2)


def test_npy_cannot_take_a_second_tensor(tmp_path: Path) -> None:
    b = np.arange(6, dtype=np.float32)
    np.save(tmp_path / "base.npy", b)
    np.save(tmp_path / "ours.npy", b)
    np.savez(tmp_path / "theirs.npz", arr_0=b, extra=b)
    with pytest.raises(UnwritableCheckpointError, match="holds one array"):
        merge_checkpoints(
            tmp_path / "base.npy",
            tmp_path / "ours.npy",
            tmp_path / "theirs.npz",
            tmp_path / "out.npy",
        )
    assert not (tmp_path / "out.npy").exists()


def test_npz_with_other_members_is_not_written(tmp_path: Path) -> None:
    base, _, _ = states()
    np.savez(tmp_path / "base.npz", **base)
    with zipfile.ZipFile(tmp_path / "base.npz", "a") as zf:
        zf.writestr("notes.txt", "kept by hand")
    with pytest.raises(UnwritableCheckpointError, match=r"notes\.txt"):
        merge_checkpoints(*(tmp_path / "base.npz" for _ in range(3)), tmp_path / "out.npz")
