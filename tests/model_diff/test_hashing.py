"""Streamed content hashes: xxh3-128 keys for caches/textconv, sha256 for user-facing ids."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import xxhash

from model_diff import hashing
from model_diff.checkpoint import from_arrays


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk of 1000 bytes: every hash below then streams over many uneven slices."""
    monkeypatch.setattr(hashing, "HASH_CHUNK", 1000)


def test_array_hash_without_layout_is_xxh3_of_the_bytes(small_chunks: None) -> None:
    """Streaming in chunks gives exactly xxh3-128 of the whole byte string."""
    a = np.arange(12_345, dtype=np.float32)
    assert hashing.array_xxh3(a, with_layout=False) == xxhash.xxh3_128_hexdigest(a.tobytes())


def test_tensor_key_covers_dtype_and_shape() -> None:
    """Same bytes under another dtype or shape get another key; same content, same key."""
    a = np.arange(64, dtype=np.int32)
    keys = {
        hashing.array_xxh3(a),
        hashing.array_xxh3(a.reshape(8, 8)),
        hashing.array_xxh3(a.view(np.float32)),
        hashing.array_xxh3(a.view(np.uint16)),
    }
    assert len(keys) == 4
    assert hashing.array_xxh3(a) == hashing.array_xxh3(a.copy())
    changed = a.copy()
    changed[-1] += 1
    assert hashing.array_xxh3(a) != hashing.array_xxh3(changed)


def test_strided_and_misaligned_arrays_hash_their_elements(small_chunks: None) -> None:
    """A strided view hashes as its contiguous copy; an unaligned view as its bytes."""
    a = np.arange(3001, dtype=np.float64).reshape(3001, 1)
    wide = np.repeat(a, 3, axis=1)
    assert hashing.array_xxh3(wide[:, 1]) == hashing.array_xxh3(a.reshape(-1))
    raw = np.zeros(a.nbytes + 3, dtype=np.uint8)
    raw[3:] = a.reshape(-1).view(np.uint8)
    unaligned = raw[3:].view(np.float64)
    assert hashing.array_xxh3(unaligned) == hashing.array_xxh3(a.reshape(-1))
    assert hashing.array_sha256(unaligned) == hashlib.sha256(a.tobytes()).hexdigest()


def test_tensor_key_of_a_checkpoint_tensor_matches_the_array_key() -> None:
    """tensor_xxh3(ref) equals the key of the same array (bfloat16 included)."""
    w = np.linspace(-1, 1, 999, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(27, 37)
    ckpt = from_arrays({"w": w})
    assert hashing.tensor_xxh3(ckpt["w"]) == hashing.array_xxh3(w)


def test_file_hashes_match_hashlib_and_xxhash(tmp_path: Path, small_chunks: None) -> None:
    """file_sha256 is the LFS-style sha256 of the file; file_xxh3 its xxh3-128."""
    data = np.random.default_rng(0).bytes(54_321)
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    assert hashing.file_sha256(p) == hashlib.sha256(data).hexdigest()
    assert hashing.file_xxh3(p) == xxhash.xxh3_128_hexdigest(data)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hashing.file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_xxh3_bytes_concatenates_chunks() -> None:
    """xxh3_bytes over pieces equals the hash of the joined bytes."""
    assert hashing.xxh3_bytes([b"ab", memoryview(b"cd"), b""]) == xxhash.xxh3_128_hexdigest(b"abcd")


def test_hashing_hands_back_each_hashed_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a ``done`` hook, every RELEASE_BYTES of a contiguous array are reported (as element
    ranges, covering the array once, in order) as soon as they are hashed; the digest is the
    same as without the hook."""
    monkeypatch.setattr(hashing, "HASH_CHUNK", 64)
    monkeypatch.setattr(hashing, "RELEASE_BYTES", 256)
    x = np.arange(1000, dtype=np.float32)  # 4000 bytes
    seen: list[tuple[int, int]] = []
    digest = hashing.array_xxh3(x, done=lambda lo, hi: seen.append((lo, hi)))
    assert digest == hashing.array_xxh3(x)
    assert seen[0][0] == 0 and seen[-1][1] == 1000
    assert all(p[1] == q[0] for p, q in itertools.pairwise(seen))
    assert all(hi - lo == 64 for lo, hi in seen[:-1])
