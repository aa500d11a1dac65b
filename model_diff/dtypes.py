"""The dtypes model-diff understands, with one canonical name each.

Canonical names follow torch's spelling without the ``torch.`` prefix (``bfloat16``,
``float8_e4m3fn``). numpy has no bfloat16 or float8 of its own: ``ml_dtypes`` provides them,
and it is imported only when such a tensor is actually viewed through numpy
(``DType.numpy``): importing it costs more than everything else a git textconv does.
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


@dataclass(frozen=True)
class DType:
    name: str  # canonical, e.g. "bfloat16"
    st_code: str  # safetensors header code, e.g. "BF16"
    itemsize: int  # bytes per element
    kind: str  # "float", "int", "uint" or "bool"

    @property
    def numpy(self) -> np.dtype:
        """Element dtype of the arrays readers hand out (imports ml_dtypes for bf16/fp8)."""
        return numpy_dtype(self.name)

    @property
    def is_float(self) -> bool:
        return self.kind == "float"


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
