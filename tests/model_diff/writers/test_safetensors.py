"""The safetensors writer: valid for the safetensors library, OURS' metadata and order kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import safetensors.numpy as stn
from safetensors import safe_open

from model_diff import merge_checkpoints
from model_diff.formats import open_checkpoint
from model_diff.toy import save_safetensors

from .conftest import expected, same, states


def _raw_safetensors(
    path: Path,
    arrays: dict[str, np.ndarray],
    header_order: list[str],
    data_order: list[str],
    metadata: dict[str, str],
) -> None:
    """A safetensors file whose header key order and data order are chosen (neither sorted)."""
    offsets, pos = {}, 0
    for n in data_order:
        offsets[n] = [pos, pos + arrays[n].nbytes]
        pos += arrays[n].nbytes
    codes = {
        "float32": "F32",
        "float64": "F64",
        "int32": "I32",
        "int64": "I64",
        "bool": "BOOL",
        "float16": "F16",
    }
    header: dict[str, object] = {"__metadata__": metadata}
    for n in header_order:
        header[n] = {
            "dtype": codes[arrays[n].dtype.name],
            "shape": list(arrays[n].shape),
            "data_offsets": offsets[n],
        }
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for n in data_order:
            f.write(arrays[n].tobytes())


def _header(path: Path) -> tuple[int, dict[str, object]]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return n, json.loads(raw[8 : 8 + n])


def test_merged_safetensors_loads_with_the_library_and_keeps_ours_metadata_and_order(
    tmp_path: Path,
) -> None:
    base, ours, theirs = states()
    order = ["flag", "c", "a", "b"]
    data = ["b", "flag", "a", "c"]
    _raw_safetensors(
        tmp_path / "base.safetensors", base, [*order, "d"], [*data, "d"], {"who": "base"}
    )
    _raw_safetensors(
        tmp_path / "ours.safetensors", ours, order, data, {"who": "ours", "format": "pt"}
    )
    save_safetensors(tmp_path / "theirs.safetensors", theirs, {"who": "theirs"})
    out = tmp_path / "out.safetensors"
    result = merge_checkpoints(
        tmp_path / "base.safetensors",
        tmp_path / "ours.safetensors",
        tmp_path / "theirs.safetensors",
        out,
    )
    assert result.written and result.format == "safetensors"
    loaded = stn.load_file(str(out))
    want = expected()
    assert set(loaded) == set(want) and all(same(loaded[k], want[k]) for k in want)
    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"who": "ours", "format": "pt"}
    n, header = _header(out)
    assert n % 8 == 0
    assert list(header) == ["__metadata__", *order, "e"]  # OURS' header order, new tensor last
    by_offset = sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")  # type: ignore[index]
    assert [k for _, k in by_offset] == [*data, "e"]  # OURS' data order, new tensor last
    with open_checkpoint(out) as ckpt:  # and model-diff's strict reader agrees
        assert all(same(ckpt.tensors[k].array().reshape(want[k].shape), want[k]) for k in want)


def test_no_metadata_stays_no_metadata(tmp_path: Path) -> None:
    base, ours, theirs = states()
    for name, st in (("base", base), ("ours", ours), ("theirs", theirs)):
        save_safetensors(tmp_path / f"{name}.safetensors", st)
    out = tmp_path / "out.safetensors"
    merge_checkpoints(*(tmp_path / f"{n}.safetensors" for n in ("base", "ours", "theirs")), out)
    _, header = _header(out)
    assert "__metadata__" not in header
    with safe_open(str(out), "np") as f:
        assert f.metadata() is None


def test_every_dtype_and_empty_and_scalar_tensors_round_trip(tmp_path: Path) -> None:
    import ml_dtypes

    base = {
        "bf16": np.linspace(-1, 1, 5).astype(ml_dtypes.bfloat16),
        "f8": np.linspace(-1, 1, 5).astype(ml_dtypes.float8_e4m3fn),
        "f8b": np.linspace(-1, 1, 5).astype(ml_dtypes.float8_e5m2),
        "u16": np.arange(3, dtype=np.uint16),
        "u64": np.arange(3, dtype=np.uint64),
        "i8": np.arange(3, dtype=np.int8),
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.array(2.5, np.float32),
    }
    theirs = {
        k: (v + np.ones((), v.dtype)).astype(v.dtype) if v.size and v.dtype.kind != "b" else v
        for k, v in base.items()
    }
    for name, st in (("base", base), ("ours", base), ("theirs", theirs)):
        save_safetensors(tmp_path / f"{name}.safetensors", st)
    out = tmp_path / "out.safetensors"
    merge_checkpoints(*(tmp_path / f"{n}.safetensors" for n in ("base", "ours", "theirs")), out)
    with safe_open(str(out), "np") as f:
        assert sorted(f.keys()) == sorted(base)
    with open_checkpoint(out) as ckpt:
        for k, want in theirs.items():
            got = ckpt.tensors[k]
            assert got.dtype.numpy == want.dtype and got.shape == want.shape
            assert got.array().tobytes() == want.tobytes(), k
