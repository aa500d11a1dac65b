"""The numpy reader: .npy memmapped, .npz stored members mapped in place, compressed on demand."""

from __future__ import annotations

import io
import mmap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model_diff.errors import CheckpointError
from model_diff.formats import open_checkpoint
from tests.model_diff.formats.factories import save_npz

STATE = {
    "layers.0.w": np.arange(24, dtype=np.float32).reshape(4, 6),
    "layers.10.w": np.linspace(-1, 1, 7).astype(np.float16),
    "ids": np.arange(5, dtype=np.int64),
    "mask": np.array([True, False]),
    "empty": np.zeros((0, 3), dtype=np.float64),
}


def assert_same(ckpt, state) -> None:  # type: ignore[no-untyped-def]
    assert set(ckpt.tensors) == set(state)
    for name, want in state.items():
        got = ckpt[name].array()
        assert ckpt[name].shape == want.shape and got.dtype == want.dtype.newbyteorder("=")
        assert got.tolist() == want.reshape(-1).tolist(), name


def test_npy_is_one_tensor_named_arr_0_and_mapped(tmp_path: Path) -> None:
    """A single .npy reads as tensor ``arr_0`` (np.savez's name), a read-only mmap view."""
    np.save(tmp_path / "embedding.npy", STATE["layers.0.w"])
    with open_checkpoint(tmp_path / "embedding.npy") as ckpt:
        assert ckpt.format == "numpy" and ckpt.layer_names == ["arr_0"]
        a = ckpt["arr_0"].array()
        assert a.tolist() == list(range(24)) and not a.flags.writeable
        assert isinstance(a.base, memoryview) and isinstance(a.base.obj, mmap.mmap)
        del a


def test_stored_npz_members_are_mapped_in_place(tmp_path: Path) -> None:
    """np.savez (uncompressed) members are views into the archive's mapping, not copies."""
    with open_checkpoint(save_npz(tmp_path / "m.npz", STATE)) as ckpt:
        assert_same(ckpt, STATE)
        a = ckpt["layers.0.w"].array()
        assert isinstance(a.base, memoryview) and isinstance(a.base.obj, mmap.mmap)
        del a


def test_compressed_npz_members_are_decompressed_on_demand(tmp_path: Path) -> None:
    """np.savez_compressed members read back exactly, one tensor at a time."""
    with open_checkpoint(save_npz(tmp_path / "m.npz", STATE, compressed=True)) as ckpt:
        assert_same(ckpt, STATE)


def test_fortran_order_and_big_endian_arrays_read_in_logical_order(tmp_path: Path) -> None:
    """F-ordered and big-endian arrays come back C-ordered, native-endian, same values."""
    f = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    be = np.arange(4, dtype=">i4")
    np.save(tmp_path / "f.npy", f)
    np.savez(tmp_path / "m.npz", f=f, be=be)
    np.savez_compressed(tmp_path / "c.npz", f=f, be=be)
    with open_checkpoint(tmp_path / "f.npy") as ckpt:
        assert ckpt["arr_0"].array().tolist() == [0, 1, 2, 3, 4, 5]
    for name in ("m.npz", "c.npz"):
        with open_checkpoint(tmp_path / name) as ckpt:
            assert ckpt["f"].array().tolist() == [0, 1, 2, 3, 4, 5]
            assert ckpt["be"].array().tolist() == [0, 1, 2, 3]
            assert ckpt["be"].dtype.name == "int32"


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    """An object array (a pickle inside .npy/.npz) is refused, never unpickled."""
    obj = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    np.savez(tmp_path / "o.npz", w=np.ones(2), o=obj)
    for name in ("o.npy", "o.npz"):
        with pytest.raises(CheckpointError, match="Python objects"):
            open_checkpoint(tmp_path / name)


def test_unsupported_dtype_is_named(tmp_path: Path) -> None:
    """A complex .npy is a clear error naming its dtype."""
    np.save(tmp_path / "c.npy", np.zeros(2, dtype=np.complex64))
    with pytest.raises(CheckpointError, match="complex64"):
        open_checkpoint(tmp_path / "c.npy")


def test_truncated_npy_and_npz_are_clear_errors(tmp_path: Path) -> None:
    """Cut-short files raise CheckpointError mentioning truncation, with a hint."""
    np.save(tmp_path / "t.npy", np.arange(1000, dtype=np.float64))
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    save_npz(tmp_path / "t.npz", STATE)
    raw = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) - 30])
    for name in ("t.npy", "t.npz"):
        with pytest.raises(CheckpointError) as info:
            open_checkpoint(tmp_path / name)
        msg = str(info.value)
        assert str(tmp_path / name) in msg and "hint:" in msg and "\n" not in msg


def test_non_npy_members_of_an_npz_are_listed_as_skipped(tmp_path: Path) -> None:
    """Extra files inside the archive are skipped by name, not guessed at."""
    buf = io.BytesIO()
    np.save(buf, np.ones(3, dtype=np.float32))
    with zipfile.ZipFile(tmp_path / "m.npz", "w") as zf:
        zf.writestr("w.npy", buf.getvalue())
        zf.writestr("README.txt", "notes")
    with open_checkpoint(tmp_path / "m.npz") as ckpt:
        assert ckpt.layer_names == ["w"] and ckpt.skipped == ["README.txt"]


def test_big_endian_npy_matches_its_little_endian_twin(tmp_path: Path) -> None:
    """A big-endian .npy (float64, float32, int16) and its little-endian twin: the same values,
    the same statistics, diffed as unchanged; pages released between reads, file untouched."""
    from model_diff.diff import ModelDiff

    rng = np.random.default_rng(0)
    for dtype in ("f8", "f4", "i2"):
        x = (rng.standard_normal(70_000) * 100).astype(dtype)
        np.save(tmp_path / f"le_{dtype}.npy", x.astype("<" + dtype))
        np.save(tmp_path / f"be_{dtype}.npy", x.astype(">" + dtype))
        raw = (tmp_path / f"be_{dtype}.npy").read_bytes()
        with (
            open_checkpoint(tmp_path / f"le_{dtype}.npy") as le,
            open_checkpoint(tmp_path / f"be_{dtype}.npy") as be,
        ):
            assert be["arr_0"].array().tolist() == x.tolist()
            be["arr_0"].release()
            assert be.tensor_info == le.tensor_info
            diffs, summary = ModelDiff().diff(le, be)
            assert summary.unchanged_parameters == 1 and diffs == []
        assert (tmp_path / f"be_{dtype}.npy").read_bytes() == raw
