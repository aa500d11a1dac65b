"""ONNX: initializers as tensors, read through the ``onnx`` package (extra ``model-diff[onnx]``).

``onnx.load`` would copy every inline weight into memory (an ONNX file holds up to 2 GB of
them). Instead this module walks the protobuf wire format of the mapped file just far enough
to find each initializer's ``raw_data`` bytes (offset and length: they are mapped, never
copied), and hands ``onnx`` a copy of the model with those payloads cut out, so ``onnx``
parses everything else (graph, nodes, inputs/outputs, opsets, initializer dims and types,
external-data records) from a few kilobytes. External-data files are mapped the same way
(paths confined to the model's directory). Initializers stored in typed fields
(``float_data``...) are small by construction and read through ``onnx.numpy_helper``.

Metadata: IR version, producer, opsets, graph inputs and outputs. ``ONNXCheckpoint.map_onto``
maps initializer names back to the source checkpoint's parameter names: kept names as they
are, ``onnx::MatMul_123`` weights through the scope of the MatMul node that reads them
(``/encoder/layer.0/query/MatMul`` -> ``encoder.layer.0.query.weight``), transposed back
to the source's layout; the rest are listed as unmapped.

This module imports ``onnx`` only when an ONNX file is opened; it must not import torch,
click or the git/hook packages.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import chunked, dtypes
from ..checkpoint import Checkpoint, Elements, NameMapping, TensorRef
from ..errors import CheckpointError, MissingDependencyError
from .base import close_mmap, page_release

NAME = "onnx"
EXTENSIONS: tuple[str, ...] = (".onnx",)
INSTALL_HINT = 'pip install "model-diff[onnx]"'

#: ONNX TensorProto.DataType -> model-diff dtype name (others are listed as skipped).
_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
    17: "float8_e4m3fn",
    19: "float8_e5m2",
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL

# Protobuf field numbers (onnx.proto3): ModelProto.graph, GraphProto.initializer,
# TensorProto.raw_data.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


def sniff(head: bytes, path: str) -> bool:
    # A protobuf has no magic number; the extension decides.
    return False


def load_onnx_package() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "reading ONNX files needs the optional onnx package", hint=INSTALL_HINT
        ) from None
    return onnx


# -- protobuf wire format (only what finding raw_data needs) -------------------------------
class _WireError(ValueError):
    pass


def _varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _WireError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf: Any, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, value start, value end) of one message."""
    pos = start
    while pos < end:
        key, vpos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, vend = _varint(buf, vpos, end)
        elif wire == 1:
            vend = vpos + 8
        elif wire == 5:
            vend = vpos + 4
        elif wire == 2:
            length, vpos = _varint(buf, vpos, end)
            vend = vpos + length
        else:
            raise _WireError(f"unsupported wire type {wire}")
        if vend > end:
            raise _WireError("field runs past the end of its message")
        yield field, wire, pos, vpos, vend
        pos = vend


def _strip(
    buf: Any, start: int, end: int, path: tuple[int, ...], found: list[tuple[int, int]]
) -> bytes:
    """The message ``buf[start:end]`` with the field at ``path`` removed from every nested
    message on the way, recording each removed payload's (offset, length) in ``found``
    (one entry per message of ``path[-2]`` in order, (-1, 0) when it had none)."""
    out = bytearray()
    if len(path) == 1:
        hit = (-1, 0)
        for field, wire, fstart, vstart, vend in _fields(buf, start, end):
            if field == path[0] and wire == 2:
                hit = (vstart, vend - vstart)
            else:
                out += buf[fstart:vend]
        found.append(hit)
        return bytes(out)
    for field, wire, fstart, vstart, vend in _fields(buf, start, end):
        if field == path[0] and wire == 2:
            inner = _strip(buf, vstart, vend, path[1:], found)
            out += _encode_varint((field << 3) | 2) + _encode_varint(len(inner)) + inner
        else:
            out += buf[fstart:vend]
    return bytes(out)


# -- reading ------------------------------------------------------------------------------
def open_path(path: str, *, label: str, unsafe_pickle: bool = False) -> Checkpoint:
    onnx = load_onnx_package()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    closers: list[Callable[[], None]] = [lambda: close_mmap(mm)]
    try:
        raw_spans: list[tuple[int, int]] = []
        stripped = _strip(
            mm, 0, size, (_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA), raw_spans
        )
        model = onnx.ModelProto()
        model.ParseFromString(stripped)
    except (_WireError, ValueError, IndexError) as e:
        close_mmap(mm)
        raise CheckpointError(
            f"is not a readable ONNX model ({e})",
            path=label,
            hint="the file is truncated or not ONNX; export it again",
        ) from None
    except Exception as e:  # protobuf's DecodeError has no stable import path
        close_mmap(mm)
        raise CheckpointError(
            f"is not a readable ONNX model ({type(e).__name__}: {e})",
            path=label,
            hint="the file is truncated or not ONNX; export it again",
        ) from None
    graph = model.graph
    if len(raw_spans) != len(graph.initializer):
        raw_spans = [(-1, 0)] * len(graph.initializer)  # no graph field: nothing was stripped
    base = os.path.dirname(os.path.abspath(path))
    externals: dict[str, mmap.mmap] = {}
    tensors: dict[str, TensorRef] = {}
    skipped: list[str] = []
    try:
        for init, (offset, length) in zip(graph.initializer, raw_spans, strict=True):
            name = init.name
            dt_name = _DTYPES.get(int(init.data_type))
            if dt_name is None:
                skipped.append(f"{name} (ONNX data type {init.data_type})")
                continue
            dt = dtypes.from_name(dt_name)
            shape = tuple(int(d) for d in init.dims)
            numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
            nbytes = numel * dt.itemsize
            if int(init.data_location) == _EXTERNAL:
                ext_mm, start = _external(onnx, init, base, externals, label, nbytes)
                tensors[name] = _mapped_ref(name, dt, shape, ext_mm, start)
            elif offset >= 0:
                if length != nbytes:
                    raise CheckpointError(
                        f"initializer {name!r} holds {length} bytes, {nbytes} expected for "
                        f"{dt_name} {list(shape)}",
                        path=label,
                        hint="the file is corrupt; export it again",
                    )
                tensors[name] = _mapped_ref(name, dt, shape, mm, offset)
            else:  # typed fields (float_data, int64_data...): small, parsed by onnx
                arr = onnx.numpy_helper.to_array(init)
                tensors[name] = _memory_ref(name, dt, arr.astype(dt.numpy).reshape(-1), shape)
    except BaseException:
        for m in [mm, *externals.values()]:
            close_mmap(m)
        raise
    closers += [lambda m=m: close_mmap(m) for m in externals.values()]  # type: ignore[misc]
    return ONNXCheckpoint(
        label,
        NAME,
        tensors,
        metadata=_metadata(model),
        skipped=skipped,
        closers=closers,
        nodes=[(n.op_type, n.name, list(n.input)) for n in graph.node],
    )


def _mapped_ref(
    name: str, dt: dtypes.DType, shape: tuple[int, ...], mm: mmap.mmap, start: int
) -> TensorRef:
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    nbytes = numel * dt.itemsize
    return TensorRef(
        name,
        dt,
        shape,
        lambda: np.frombuffer(mm, dtype=dt.storage, count=numel, offset=start),
        release=lambda: page_release(mm, start, start + nbytes),
        release_range=lambda a, b: page_release(mm, start + a, start + b),
        offset=start,
    )


def _memory_ref(name: str, dt: dtypes.DType, flat: np.ndarray, shape: tuple[int, ...]) -> TensorRef:
    flat = np.ascontiguousarray(flat)
    return TensorRef(name, dt, shape, lambda: flat)


def _external(
    onnx: Any,
    init: Any,
    base: str,
    externals: dict[str, mmap.mmap],
    label: str,
    nbytes: int,
) -> tuple[mmap.mmap, int]:
    """The mapped external-data file of an initializer and the tensor's offset in it."""
    info = {e.key: e.value for e in init.external_data}
    location = info.get("location", "")
    target = os.path.realpath(os.path.join(base, location))
    if not location or os.path.isabs(location) or not target.startswith(base + os.sep):
        raise CheckpointError(
            f"initializer {init.name!r} points outside the model's directory ({location!r})",
            path=label,
            hint="external data must sit beside the .onnx file",
        )
    if target not in externals:
        if not os.path.isfile(target):
            raise CheckpointError(
                f"external data file {location!r} of initializer {init.name!r} is missing",
                path=label,
                hint="copy the .onnx file together with its external data files",
            )
        with open(target, "rb") as f:
            externals[target] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    m = externals[target]
    offset = int(info.get("offset", "0") or 0)
    length = int(info.get("length", str(nbytes)) or nbytes)
    if length != nbytes or offset + nbytes > len(m):
        raise CheckpointError(
            f"external data of initializer {init.name!r} ({location!r} at {offset}, "
            f"{length} bytes) does not hold its {nbytes} bytes",
            path=label,
            hint="the external data file is truncated or from another export",
        )
    return m, offset


def _metadata(model: Any) -> dict[str, str]:
    def value_info(v: Any) -> str:
        t = v.type.tensor_type
        dims = ",".join(d.dim_param or str(d.dim_value) for d in t.shape.dim)
        return f"{v.name}[{dims}]"

    out = {
        "onnx.ir_version": str(model.ir_version),
        "onnx.opset": " ".join(
            f"{o.domain or 'ai.onnx'}={o.version}"
            for o in sorted(model.opset_import, key=lambda o: o.domain)
        ),
        "onnx.inputs": " ".join(value_info(v) for v in model.graph.input),
        "onnx.outputs": " ".join(value_info(v) for v in model.graph.output),
    }
    if model.producer_name:
        out["onnx.producer"] = f"{model.producer_name} {model.producer_version}".strip()
    return out


# -- names ------------------------------------------------------------------------------
def scope_of(node_name: str) -> str:
    """The module path of an exporter node name: ``/encoder/layer.0/query/MatMul`` ->
    ``encoder.layer.0.query`` ("" for a node outside any module)."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])


class ONNXCheckpoint(Checkpoint):
    """An ONNX model's initializers plus the node list that explains their names."""

    def __init__(
        self,
        path: str,
        format: str,
        tensors: dict[str, TensorRef],
        *,
        metadata: dict[str, str],
        skipped: list[str],
        closers: list[Callable[[], None]],
        nodes: list[tuple[str, str, list[str]]],
    ) -> None:
        super().__init__(path, format, tensors, metadata=metadata, skipped=skipped, closers=closers)
        self.nodes = nodes

    def map_onto(self, other: Checkpoint) -> tuple[Checkpoint, NameMapping] | None:
        if other.format == NAME or not other.tensors:
            return None
        # MatMul weights the exporter renamed: the B input of a MatMul node, named by scope.
        matmul_b: dict[str, str] = {}
        for op, node_name, inputs in self.nodes:
            if op == "MatMul" and len(inputs) == 2 and inputs[1] in self.tensors:
                scope = scope_of(node_name)
                if scope:
                    matmul_b.setdefault(inputs[1], f"{scope}.weight")
        refs: dict[str, TensorRef] = {}
        mapped = 0
        renamed: list[str] = []
        transposed: list[str] = []
        unmapped: list[str] = []
        taken = set()
        for name, ref in self.tensors.items():
            target = name if name in other.tensors else matmul_b.get(name)
            if target is None or target not in other.tensors or target in taken:
                refs[name] = ref
                unmapped.append(name)
                continue
            taken.add(target)
            mapped += 1
            if target != name:
                renamed.append(target)
            their = other.tensors[target].shape
            # MatMul(x, B) computes x @ B where the source's Linear holds B^T: a renamed
            # MatMul weight is always the transpose (square ones included).
            flip = len(ref.shape) == 2 and their == ref.shape[::-1]
            if flip and (target != name or their != ref.shape):
                refs[target] = _transposed_ref(ref, target)
                transposed.append(target)
            elif target == name:
                refs[target] = ref
            else:
                refs[target] = ref.with_name(target)
        if not renamed and not transposed:
            return None  # names and layouts already line up: nothing to state
        transforms: dict[str, tuple[str, ...]] = {}
        if renamed:
            transforms["name from MatMul scope"] = tuple(renamed)
        if transposed:
            transforms["transpose"] = tuple(transposed)
        view = Checkpoint(
            self.path,
            self.format,
            refs,
            metadata=self.metadata,
            skipped=self.skipped,
            closers=self._closers,
        )
        return view, NameMapping(
            "ONNX export", mapped, len(self.tensors), tuple(unmapped), transforms
        )


def _transposed_ref(ref: TensorRef, name: str) -> TensorRef:
    shape = ref.shape

    def load() -> Elements:
        arr = ref.storage()
        assert isinstance(arr, np.ndarray)  # ONNX initializers are plain arrays
        return chunked.transposed(arr.reshape(shape))

    return TensorRef(name, ref.dtype, (shape[1], shape[0]), load, release=ref.release)
