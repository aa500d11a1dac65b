"""The safetensors reader: every dtype, zero-copy views, strict header validation."""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError
from safetensors.numpy import load_file, save, save_file

from model_diff.errors import CheckpointError
from model_diff.formats import open_checkpoint
from model_diff.toy import save_safetensors

ALL_DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    ml_dtypes.bfloat16,
    ml_dtypes.float8_e4m3fn,
    ml_dtypes.float8_e5m2,
    np.int64,
    np.int32,
    np.int16,
    np.int8,
    np.uint64,
    np.uint32,
    np.uint16,
    np.uint8,
    np.bool_,
]


def every_dtype_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out: dict[str, np.ndarray] = {}
    for dt in ALL_DTYPES:
        name = np.dtype(dt).name
        if np.dtype(dt).kind == "b":
            out[name] = rng.random((5, 3)) > 0.5
        elif np.dtype(dt).kind in "iu":
            out[name] = rng.integers(0, 100, (5, 3)).astype(dt)
        else:
            out[name] = (rng.standard_normal((5, 3)) * 4).astype(dt)
    out["empty"] = np.zeros((0, 4), dtype=np.float32)
    return out


def raw_file(path: Path, header: Any, data: bytes = b"", *, length: int | None = None) -> Path:
    """A safetensors-shaped file from a header (object or raw bytes) and data bytes."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(h) if length is None else length
    path.write_bytes(n.to_bytes(8, "little") + h + data)
    return path


def test_every_dtype_round_trips_bit_exactly(tmp_path: Path) -> None:
    """Each safetensors dtype comes back with the same dtype, shape and bytes."""
    state = every_dtype_state()
    save_safetensors(tmp_path / "m.safetensors", state)
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        assert set(ckpt.tensors) == set(state)
        for name, want in state.items():
            ref = ckpt[name]
            got = ref.array()
            assert ref.shape == want.shape and got.dtype == want.dtype
            assert got.tobytes() == want.tobytes(), name
            del got


def test_agrees_with_the_safetensors_library(tmp_path: Path) -> None:
    """A file written by the safetensors library reads back the same as the library reads it."""
    state = {
        k: v
        for k, v in every_dtype_state().items()
        if v.dtype.name not in ("bfloat16", "float8_e4m3fn", "float8_e5m2")
    }
    save_file(state, str(tmp_path / "lib.safetensors"), metadata={"format": "np"})
    ref = load_file(str(tmp_path / "lib.safetensors"))
    with open_checkpoint(tmp_path / "lib.safetensors") as ckpt:
        assert ckpt.metadata == {"format": "np"}
        assert set(ckpt.tensors) == set(ref)
        for name, want in ref.items():
            assert ckpt[name].array().tobytes() == want.tobytes()


def test_arrays_are_read_only_views_of_one_file_mapping(tmp_path: Path) -> None:
    """Tensor data is not copied: arrays are read-only views whose base is the file's mmap."""
    save_safetensors(
        tmp_path / "m.safetensors",
        {"a": np.arange(4096, dtype=np.float32), "b": np.ones(10, dtype=np.float16)},
    )
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        a, b = ckpt["a"].array(), ckpt["b"].array()
        assert not a.flags.writeable and not a.flags.owndata
        assert isinstance(a.base, memoryview) and isinstance(b.base, memoryview)
        assert isinstance(a.base.obj, mmap.mmap) and a.base.obj is b.base.obj
        ckpt["a"].release()  # dropping pages keeps the data readable (re-faulted from the file)
        assert a[4095] == 4095.0
        del a, b


def test_metadata_and_header_come_without_reading_data(tmp_path: Path) -> None:
    """Names, dtypes, shapes and __metadata__ are known from the header alone."""
    save_safetensors(
        tmp_path / "m.safetensors",
        {"layers.10.w": np.zeros((3, 2), np.float16), "layers.2.w": np.zeros(2, np.int8)},
        metadata={"format": "pt", "step": "100"},
    )
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        assert ckpt.format == "safetensors"
        assert ckpt.layer_names == ["layers.2.w", "layers.10.w"]
        assert ckpt["layers.10.w"].dtype.name == "float16"
        assert ckpt.metadata == {"format": "pt", "step": "100"}
        assert ckpt.size_bytes == 3 * 2 * 2 + 2


def test_zero_tensor_file_is_an_empty_checkpoint(tmp_path: Path) -> None:
    """A header with no tensors (``{}``) is a valid, empty checkpoint."""
    raw_file(tmp_path / "e.safetensors", {})
    with open_checkpoint(tmp_path / "e.safetensors") as ckpt:
        assert len(ckpt) == 0


def test_zero_dimensional_tensor_keeps_its_empty_shape(tmp_path: Path) -> None:
    """A scalar (shape []) reads as shape () with one element."""
    path = raw_file(
        tmp_path / "s.safetensors",
        {"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}},
        np.float32(2.5).tobytes(),
    )
    with open_checkpoint(path) as ckpt:
        assert ckpt["s"].shape == () and ckpt["s"].numel == 1
        assert ckpt["s"].array().tolist() == [2.5]


def test_close_with_live_views_does_not_break_them(tmp_path: Path) -> None:
    """close() while an array is still referenced leaves that array valid."""
    save_safetensors(tmp_path / "m.safetensors", {"a": np.arange(8, dtype=np.int32)})
    ckpt = open_checkpoint(tmp_path / "m.safetensors")
    a = ckpt["a"].array()
    ckpt.close()
    assert a.sum() == 28


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

# (case id, header, data, header-length override, words the message must contain)
INVALID: list[tuple[str, Any, bytes, int | None, str]] = [
    ("length-past-end", {"a": F32x2}, b"\0" * 8, 10_000, "runs past the end"),
    ("length-too-large", b"{}", b"", 200_000_000, "exceeds"),
    ("not-json", b"{not json}", b"", None, "not valid JSON"),
    ("not-object", b"[1, 2]", b"", None, "does not start with '{'"),
    ("bad-utf8", b'{"\xff": 1}', b"", None, "UTF-8"),
    (
        "missing-shape",
        {"a": {"dtype": "F32", "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "lacks shape",
    ),
    (
        "unknown-dtype",
        {"a": {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "dtype 'F7'",
    ),
    (
        "negative-dim",
        {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "invalid shape",
    ),
    (
        "size-mismatch",
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "span 8",
    ),
    (
        "offsets-reversed",
        {"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}},
        b"\0" * 8,
        None,
        "end before",
    ),
    (
        "overlap",
        {"a": F32x2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
        b"\0" * 12,
        None,
        "overlaps",
    ),
    (
        "gap",
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
        b"\0" * 12,
        None,
        "gap",
    ),
    (
        "truncated-data",
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
        b"\0" * 8,
        None,
        "truncated",
    ),
    ("uncovered-tail", {"a": F32x2}, b"\0" * 12, None, "not covered"),
    (
        "metadata-not-str",
        {"__metadata__": {"step": 3}, "a": F32x2},
        b"\0" * 8,
        None,
        "__metadata__",
    ),
    (
        "duplicate-name",
        b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
        b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
        b"\0" * 8,
        None,
        "duplicate",
    ),
]


@pytest.mark.parametrize("spec", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_header_is_rejected_with_a_precise_message(
    tmp_path: Path, spec: tuple[str, Any, bytes, int | None, str]
) -> None:
    """Each malformed header raises CheckpointError naming the file and what is wrong."""
    case, header, data, length, words = spec
    path = raw_file(tmp_path / f"{case}.safetensors", header, data, length=length)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path)
    msg = str(info.value)
    assert words in msg and str(path) in msg and "\n" not in msg and "hint:" in msg


# The library (serde_json) keeps the last of two duplicate keys; we refuse the ambiguity.
_LIBRARY_ALSO_REJECTS = [c for c in INVALID if c[0] != "duplicate-name"]


@pytest.mark.parametrize("spec", _LIBRARY_ALSO_REJECTS, ids=[c[0] for c in _LIBRARY_ALSO_REJECTS])
def test_the_safetensors_library_rejects_the_same_files(
    tmp_path: Path, spec: tuple[str, Any, bytes, int | None, str]
) -> None:
    """Our rejections are not stricter than the reference library's (it refuses them too)."""
    case, header, data, length, _ = spec
    path = raw_file(tmp_path / f"{case}.safetensors", header, data, length=length)
    with pytest.raises((SafetensorError, ValueError, OSError)):
        load_file(str(path))


def test_empty_and_short_files_are_rejected(tmp_path: Path) -> None:
    """A 0-byte file and a file shorter than the 8-byte length prefix are clear errors."""
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="is empty"):
        open_checkpoint(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="too short"):
        open_checkpoint(tmp_path / "short.safetensors")


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE


@pytest.mark.skipif(
    not Path("/proc/self/statm").exists() or not hasattr(mmap, "MADV_DONTNEED"),
    reason="needs Linux /proc and madvise",
)
def test_release_drops_the_tensors_resident_pages(tmp_path: Path) -> None:
    """Reading a tensor maps its pages in; release() gives them back (RSS falls), and the data
    stays readable afterwards."""
    n = 8 << 20  # 32 MiB of float32
    save_safetensors(tmp_path / "big.safetensors", {"w": np.ones(n, dtype=np.float32)})
    with open_checkpoint(tmp_path / "big.safetensors") as ckpt:
        ref = ckpt["w"]
        before = _resident_bytes()
        a = ref.array()
        assert float(a.sum(dtype=np.float64)) == n
        touched = _resident_bytes()
        ref.release()
        released = _resident_bytes()
        assert touched - before > 24 << 20
        assert touched - released > 24 << 20
        assert float(a[-1]) == 1.0
        del a


def _peak_since_reset() -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes from /proc/self/status."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                fields[line.split(":")[0]] = int(line.split()[1]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def _release_bound(workers: int, part: int) -> int:
    """The RSS a pair diff may add under page_release's rules, per file: each worker's part
    in flight (its edges rounded out to huge pages, which map 2 MiB at a time) and a run
    shorter than RELEASE_RUN waiting for its neighbour (edges rounded too); 4 MiB for the
    heap."""
    from model_diff.formats.base import HUGE_PAGE, RELEASE_RUN

    per_file = workers * (part + 2 * HUGE_PAGE) + RELEASE_RUN + 2 * HUGE_PAGE
    return 2 * per_file + (4 << 20)


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists() or not hasattr(mmap, "MADV_DONTNEED"),
    reason="needs Linux /proc (clear_refs, status) and madvise",
)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_large_tensor_is_released_part_by_part_during_a_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Peak RSS during the diff of a single-tensor pair (2 x 128 MiB) stays near the parts in
    flight, not the tensor: each part's pages are given back once a release run is read."""
    from model_diff import metrics
    from model_diff.diff import DiffConfig, ModelDiff

    part = 4 << 20
    monkeypatch.setattr(metrics, "PART_ELEMENTS", part // 4)  # 4 MiB of float32 per part
    n = 32 << 20
    rng = np.random.default_rng(3)
    a = rng.standard_normal(n, dtype=np.float32)
    save_safetensors(tmp_path / "old.safetensors", {"w": a})
    a += np.float32(0.5)
    save_safetensors(tmp_path / "new.safetensors", {"w": a})
    del a
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base, _ = _peak_since_reset()
    diffs, _ = ModelDiff(DiffConfig(num_workers=workers, low_rank=False)).diff(
        str(tmp_path / "old.safetensors"), str(tmp_path / "new.safetensors")
    )
    _, peak = _peak_since_reset()
    assert diffs[0].max_diff == pytest.approx(0.5, rel=1e-6)
    # Whole-tensor release would map both files whole: 256 MiB.
    bound = _release_bound(workers, part)
    assert bound <= 64 << 20
    assert peak - base < bound, f"peak grew by {(peak - base) >> 20} MiB"


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists() or not hasattr(mmap, "MADV_DONTNEED"),
    reason="needs Linux /proc (clear_refs, status) and madvise",
)
def test_a_prefixed_large_tensor_is_still_released_part_by_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DDP ``module.`` prefix on one side (stripped by name alignment, a renamed view)
    keeps part-by-part page release: peak RSS stays near the parts in flight."""
    from model_diff import metrics
    from model_diff.diff import DiffConfig, ModelDiff

    part = 4 << 20
    monkeypatch.setattr(metrics, "PART_ELEMENTS", part // 4)  # 4 MiB of float32 per part
    n = 16 << 20
    rng = np.random.default_rng(4)
    a = rng.standard_normal(n, dtype=np.float32)
    save_safetensors(tmp_path / "old.safetensors", {"module.w": a})
    a += np.float32(0.5)
    save_safetensors(tmp_path / "new.safetensors", {"w": a})
    del a
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base, _ = _peak_since_reset()
    diffs, _ = ModelDiff(DiffConfig(num_workers=1, low_rank=False)).diff(
        str(tmp_path / "old.safetensors"), str(tmp_path / "new.safetensors")
    )
    _, peak = _peak_since_reset()
    assert [d.name for d in diffs] == ["w"]
    assert diffs[0].max_diff == pytest.approx(0.5, rel=1e-6)
    # Without part release the renamed side maps its whole 64 MiB (and the bound is 44 MiB).
    assert peak - base < _release_bound(1, part), f"peak grew by {(peak - base) >> 20} MiB"


# A small valid file written by the reference library, the seed of the fuzz test below.
_VALID = save(
    {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.int16)},
    metadata={"k": "v"},
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_corrupted_files_are_rejected_exactly_when_the_library_rejects_them(
    tmp_path: Path, data: st.DataObject
) -> None:
    """Random byte edits and truncations: we raise only CheckpointError, never crash, and
    accept a file exactly when the safetensors library accepts it."""
    raw = bytearray(_VALID)
    n_edits = data.draw(st.integers(0, 3))
    for _ in range(n_edits):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(raw[:cut]))
    try:
        load_file(str(path))
        library_ok = True
    except Exception:
        library_ok = False
    try:
        with open_checkpoint(path, format="safetensors") as ckpt:
            for ref in ckpt.tensors.values():
                ref.array()
        ours_ok = True
    except CheckpointError:
        ours_ok = False
    assert ours_ok == library_ok


def test_the_pass_reads_in_file_order_and_reports_in_natural_order(tmp_path: Path) -> None:
    """The safetensors library stores tensors in name order (layers.1, layers.10, layers.2);
    the reader records each tensor's byte offset, the pass reads in that order (the progress
    callback hears of each tensor as stored) and the diffs come in natural order."""
    from model_diff.diff import DiffConfig, ModelDiff
    from model_diff.naming import natural_sorted

    names = [f"layers.{i}.w" for i in (1, 2, 10, 11, 3)]
    old = {n: np.full(4, i, np.float32) for i, n in enumerate(names)}
    save_file(old, str(tmp_path / "a.safetensors"))
    save_file({n: v + 1 for n, v in old.items()}, str(tmp_path / "b.safetensors"))
    with open_checkpoint(tmp_path / "b.safetensors") as ckpt:
        offsets = {n: ref.offset for n, ref in ckpt.tensors.items()}
        assert all(isinstance(o, int) and o >= 8 for o in offsets.values())
    stored = sorted(names, key=lambda n: offsets[n])
    assert stored != natural_sorted(names)  # this file is not in natural order
    seen: list[str] = []
    diffs, _ = ModelDiff(DiffConfig(low_rank=False)).diff(
        str(tmp_path / "a.safetensors"),
        str(tmp_path / "b.safetensors"),
        progress=lambda done, total, name: seen.append(name),
    )
    assert seen == stored
    assert [d.name for d in diffs] == natural_sorted(names)
