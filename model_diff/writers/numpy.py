"""The numpy writers: a ``.npy`` file (one array) and an ``.npz`` archive (one member per tensor).

``layout(path)`` reads what a written file keeps from the file it stands in for: for an
``.npz``, the member order and each member's compression (stored members stay stored and
64-byte aligned, deflated ones are deflated again, streamed). Each member is a ``.npy``
header (format 1.0, or 2.0 when the header needs it) followed by the C-order bytes.
Only dtypes numpy stores natively are written: bfloat16 and float8 have no ``.npy``
description that reads back as themselves, so ``check`` refuses them.
This module must not import torch.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..formats.numpy import NPY_MAGIC, SINGLE_ARRAY_NAME
from .base import OutTensor, aligned_member, write_tensor

NAME = "numpy"
#: dtype names an .npy header describes faithfully (ml_dtypes' bfloat16/float8 become "<V2").
NATIVE = frozenset(
    [
        "float64",
        "float32",
        "float16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint64",
        "uint32",
        "uint16",
        "uint8",
        "bool",
    ]
)


@dataclass(frozen=True)
class Layout:
    single: bool  # a .npy file (one array named arr_0) rather than an .npz archive
    members: tuple[tuple[str, int], ...] = ()  # (tensor name, zip compress type) in order


def layout(path: str) -> Layout:
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
            return Layout(single=True)
    with zipfile.ZipFile(path) as zf:
        members = tuple(
            (i.filename[: -len(".npy")], i.compress_type)
            for i in zf.infolist()
            if i.filename.endswith(".npy")
        )
    return Layout(single=False, members=members)


def unwritable(layout: Layout, tensors: Mapping[str, OutTensor]) -> str | None:
    """Why ``tensors`` cannot be written in this layout, or None."""
    odd = [f"{t.name} ({t.dtype.name})" for t in tensors.values() if t.dtype.name not in NATIVE]
    if odd:
        return f"numpy files cannot hold {', '.join(odd[:3])}: no .npy dtype reads back as it"
    if layout.single and list(tensors) != [SINGLE_ARRAY_NAME]:
        return f"a .npy file holds one array ({SINGLE_ARRAY_NAME}); the merge has {len(tensors)}"
    return None


def npy_header(t: OutTensor) -> bytes:
    d = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(t.dtype.numpy).newbyteorder("<")),
        "fortran_order": False,
        "shape": tuple(t.shape),
    }
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, d)
    except ValueError:  # header longer than 65535 bytes: format 2.0
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def write(layout: Layout, tensors: Mapping[str, OutTensor], f: BinaryIO) -> None:
    if layout.single:
        t = tensors[SINGLE_ARRAY_NAME]
        f.write(npy_header(t))
        write_tensor(f, t)
        return
    compress = dict(layout.members)
    known = [n for n, _ in layout.members if n in tensors]
    order = known + [n for n in tensors if n not in compress]
    # New members are stored unless every member of the original was deflated.
    default = (
        zipfile.ZIP_DEFLATED
        if layout.members and all(c == zipfile.ZIP_DEFLATED for _, c in layout.members)
        else zipfile.ZIP_STORED
    )
    with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
        for name in order:
            t = tensors[name]
            head = npy_header(t)

            def chunks(t: OutTensor = t, head: bytes = head) -> object:
                yield head
                yield from t.chunks()

            aligned_member(
                zf,
                f,
                f"{name}.npy",
                len(head) + t.nbytes,
                chunks(),  # type: ignore[arg-type]
                compress=compress.get(name, default),
            )
