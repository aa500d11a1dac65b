"""The dtypes model-diff understands, with one canonical name each.

Canonical names follow torch's spelling without the ``torch.`` prefix (``bfloat16``,
``float8_e4m3fn``). numpy has no bfloat16 or float8 of its own: ``ml_dtypes`` provides them,
and it is imported only when such a tensor is actually viewed through numpy
(``DType.numpy``): importing it costs more than everything else a git textconv does.
The metrics kernel, hashing and byte comparisons never need it: they read a tensor's
*storage* view (``DType.storage``: uint16 for bfloat16, uint8 for float8) and are told the
logical dtype by name.
This module maps between canonical names, safetensors codes, numpy dtypes and torch dtypes.
It must not import torch, nor ml_dtypes at import time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: Canonical names whose numpy dtype comes from ml_dtypes.
ML_DTYPES_NAMES = frozenset({"bfloat16", "float8_e4m3fn", "float8_e5m2"})


@functools.cache
def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for a canonical name (ml_dtypes imported here, on first need)."""
    if name in ML_DTYPES_NAMES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


@functools.cache
def storage_dtype(name: str) -> np.dtype:
    """The numpy dtype of a canonical name's storage view: the same bits as an unsigned
    integer for the ml_dtypes types (uint16 for bfloat16, uint8 for float8), the numpy
    dtype itself for every other type. Never imports ml_dtypes."""
    if name in ML_DTYPES_NAMES:
        return np.dtype(np.uint16 if name == "bfloat16" else np.uint8)
    return np.dtype(name)


@functools.cache
def _float8_table(name: str) -> np.ndarray:
    """float32 value of each of the 256 float8 bit patterns (OCP FP8: E4M3FN has no
    infinities and one NaN per sign, S.1111.111; E5M2 is IEEE-like)."""
    bits = np.arange(256, dtype=np.int64)
    sign = np.where(bits >> 7, -1.0, 1.0)  # copysign: NaNs keep their sign bit too
    if name == "float8_e4m3fn":
        e, m = (bits >> 3) & 0xF, bits & 7
        mag = np.where(e == 0, np.ldexp(m, -9), np.ldexp(m | 8, e - 10))
        mag = np.where((e == 15) & (m == 7), np.nan, mag)
    else:
        e, m = (bits >> 2) & 0x1F, bits & 3
        mag = np.where(e == 0, np.ldexp(m, -16), np.ldexp(m | 4, e - 17))
        mag = np.where(e == 31, np.where(m == 0, np.inf, np.nan), mag)
    out = np.copysign(mag, sign).astype(np.float32)
    out.flags.writeable = False
    return out


def storage_to_float32(
    x: np.ndarray, name: str | None, out: np.ndarray | None = None
) -> np.ndarray:
    """The values of ``x`` as float32, exactly for every type of float32 precision or less,
    without ml_dtypes: ``x`` may be the storage view of ``name`` (uint16 bits of a bfloat16,
    uint8 of a float8), else ``x``'s own values are cast. ``out``: a float32 array of ``x``'s
    shape to write into (a reused buffer), else a new one."""
    if name == "bfloat16" and x.dtype == np.uint16:
        # bfloat16 is the top half of a float32: shifting the bits up is the exact value.
        wide = np.left_shift(
            x, np.uint32(16), dtype=np.uint32, out=None if out is None else out.view(np.uint32)
        )
        return wide.view(np.float32)
    if name in ("float8_e4m3fn", "float8_e5m2") and x.dtype == np.uint8:
        return np.take(_float8_table(name), x, out=out)
    if out is None:
        return x.astype(np.float32)
    np.copyto(out, x, casting="unsafe")
    return out


@dataclass(frozen=True)
class DType:
    name: str  # canonical, e.g. "bfloat16"
    st_code: str  # safetensors header code, e.g. "BF16" ("" for block-quantized types)
    itemsize: int  # bytes per element handed out (decoded values; float32 for quantized types)
    kind: str  # "float", "int", "uint" or "bool"
    #: Block-quantized storage (GGML's Q4_K, Q8_0, ...): elements per block and bytes per
    #: block. 1 and 0 for plain dtypes, whose storage is ``numpy`` itself.
    block_size: int = 1
    block_bytes: int = 0

    @property
    def numpy(self) -> np.dtype:
        """Element dtype of the arrays readers hand out (imports ml_dtypes for bf16/fp8;
        float32 for block-quantized types, whose values are decoded)."""
        return numpy_dtype("float32" if self.block_bytes else self.name)

    @property
    def storage(self) -> np.dtype:
        """Element dtype of storage views (``TensorRef.storage()``): ``numpy`` itself, except
        uint16 for bfloat16 and uint8 for float8 (the same bits, no ml_dtypes needed)."""
        return storage_dtype("float32" if self.block_bytes else self.name)

    @property
    def storage_differs(self) -> bool:
        """True when storage views are not of ``numpy`` (bfloat16, float8)."""
        return not self.block_bytes and self.name in ML_DTYPES_NAMES

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_quantized(self) -> bool:
        """Stored in blocks of quantized values that decode to ``numpy`` (float32)."""
        return self.block_bytes > 0

    def storage_nbytes(self, numel: int) -> int:
        """Bytes that ``numel`` elements occupy in storage (whole blocks for quantized types)."""
        if self.block_bytes:
            return -(-numel // self.block_size) * self.block_bytes
        return numel * self.itemsize


_TABLE = [
    DType("float64", "F64", 8, "float"),
    DType("float32", "F32", 4, "float"),
    DType("float16", "F16", 2, "float"),
    DType("bfloat16", "BF16", 2, "float"),
    DType("float8_e4m3fn", "F8_E4M3", 1, "float"),
    DType("float8_e5m2", "F8_E5M2", 1, "float"),
    DType("int64", "I64", 8, "int"),
    DType("int32", "I32", 4, "int"),
    DType("int16", "I16", 2, "int"),
    DType("int8", "I8", 1, "int"),
    DType("uint64", "U64", 8, "uint"),
    DType("uint32", "U32", 4, "uint"),
    DType("uint16", "U16", 2, "uint"),
    DType("uint8", "U8", 1, "uint"),
    DType("bool", "BOOL", 1, "bool"),
]

BY_NAME: dict[str, DType] = {d.name: d for d in _TABLE}
#: Safetensors codes only: block-quantized types are never valid in a safetensors header.
BY_ST_CODE: dict[str, DType] = {d.st_code: d for d in _TABLE}


def from_name(name: str) -> DType:
    """The DType for a canonical name; KeyError if unknown."""
    return BY_NAME[name]


def from_numpy(dtype: np.dtype) -> DType:
    """The DType for a numpy dtype (either byte order); KeyError if unsupported."""
    dt = np.dtype(dtype)
    if dt.byteorder == ">":
        dt = dt.newbyteorder("=")
    # By name first: a bfloat16 array means ml_dtypes is loaded already, a float32 one must
    # not load it. The dtype itself must then be exactly ours (not a look-alike name).
    found = BY_NAME.get(dt.name)
    if found is None or found.numpy != dt:
        raise KeyError(dtype)
    return found


def from_torch_name(torch_dtype_str: str) -> DType:
    """The DType for ``str(torch.dtype)`` such as ``torch.bfloat16``; KeyError if unsupported."""
    name = torch_dtype_str.removeprefix("torch.")
    aliases = {
        "float": "float32",
        "double": "float64",
        "half": "float16",
        "long": "int64",
        "int": "int32",
        "short": "int16",
    }
    return BY_NAME[aliases.get(name, name)]


_QUANTIZED: dict[str, DType] = {}


def quantized(name: str, block_size: int, block_bytes: int) -> DType:
    """The DType of a block-quantized storage type (GGML's ``Q4_K``: 256 elements in 144
    bytes), whose values decode to float32. Its name is the one users know (``Q4_K``);
    readers that know the block layout (formats.gguf) declare it here."""
    known = _QUANTIZED.get(name)
    if known is not None:
        if (known.block_size, known.block_bytes) != (block_size, block_bytes):
            raise ValueError(f"quantized type {name} redeclared with another block layout")
        return known
    if block_size < 1 or block_bytes < 1 or name in BY_NAME:
        raise ValueError(f"invalid quantized type {name} ({block_size} in {block_bytes} bytes)")
    dt = DType(name, "", 4, "float", block_size, block_bytes)
    _QUANTIZED[name] = dt
    return dt


def find_quantized(name: str | None) -> DType | None:
    """The block-quantized type of this name, once a reader has declared it; else None."""
    return _QUANTIZED.get(name) if name is not None else None


def bits_per_element(name: str | None) -> float | None:
    """Storage bits per element of a dtype name (Q4_K: 4.5, bfloat16: 16); None if unknown."""
    if name is None:
        return None
    q = _QUANTIZED.get(name)
    if q is not None:
        return 8.0 * q.block_bytes / q.block_size
    d = BY_NAME.get(name)
    return 8.0 * d.itemsize if d is not None else None
