"""GGUF: the file format of llama.cpp, Ollama and LM Studio, read through the ``gguf`` package.

The ``gguf`` package (llama.cpp's own Python reader, optional extra ``model-diff[gguf]``)
parses the header: metadata, tensor names, GGML types, dimensions and offsets. Tensor data
is mapped from the file by this module (one read-only ``mmap`` per file, pages released per
tensor range) and handed out as:

* a plain numpy view for F32/F16/BF16/F64/I8-I64 tensors (zero-copy, like safetensors);
* a ``ChunkedArray`` for block-quantized types (Q4_0 ... Q8_0, K-quants, IQ types, ...):
  each element range decodes only the blocks covering it, with ``gguf.quants.dequantize``,
  so memory stays bounded whatever the tensor's size; hashing and the identical-bytes test
  read the stored blocks.

The quantization type is the tensor's dtype (``Q4_K``); shapes are shown in torch/numpy order
(GGUF stores dimensions innermost first, ``[cols, rows]``).

``GGUFCheckpoint.map_onto(other)`` maps GGUF names (``blk.0.attn_q.weight``) to the other
checkpoint's HF names with ``gguf.get_tensor_name_map`` for the architecture in the metadata,
and undoes llama.cpp's converter transforms so values line up: the Q/K row permutation for
RoPE of LLaMA-family architectures (row gather, no copy of the tensor) and transposed
matrices (plain types). Names it cannot map are listed, never dropped.

This module imports ``gguf`` only when a GGUF file is opened; it must not import torch,
click or the git/hook packages.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import chunked, dtypes
from ..checkpoint import Checkpoint, Elements, NameMapping, TensorRef
from ..errors import CheckpointError, MissingDependencyError
from .base import close_mmap, page_release

NAME = "gguf"
EXTENSIONS: tuple[str, ...] = (".gguf",)
MAGIC = b"GGUF"
INSTALL_HINT = 'pip install "model-diff[gguf]"'

#: GGML types stored as plain numpy elements (everything else is block-quantized).
_PLAIN = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}
#: Architectures whose llama.cpp converter permutes the rows of Q and K for RoPE
#: (``LlamaModel.permute`` in convert_hf_to_gguf.py and the classes that reuse it).
ROPE_PERMUTED = frozenset({"llama", "deci", "deepseek", "granite", "granitemoe"})
#: Metadata keys kept as ``Checkpoint.metadata`` (per-architecture keys are added by name).
_ARCH_KEYS = (
    "block_count",
    "context_length",
    "embedding_length",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "vocab_size",
)


def sniff(head: bytes, path: str) -> bool:
    return head.startswith(MAGIC)


def load_gguf_package() -> Any:
    """The ``gguf`` package, or a one-line error naming the extra that installs it."""
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError(
            "reading GGUF files needs the optional gguf package (llama.cpp's reader)",
            hint=INSTALL_HINT,
        ) from None
    return gguf


def open_path(path: str, *, label: str, unsafe_pickle: bool = False) -> Checkpoint:
    gg = load_gguf_package()
    try:
        reader = gg.GGUFReader(path, "r")
    except (ValueError, IndexError, KeyError, OverflowError, TypeError) as e:
        raise CheckpointError(
            f"is not a readable GGUF file ({' '.join(str(e).split()) or type(e).__name__})",
            path=label,
            hint="the file is truncated or corrupt; download or convert it again",
        ) from None
    if reader.byte_order != "I":
        raise CheckpointError(
            "is a byte-swapped (big-endian) GGUF file",
            path=label,
            hint="convert it with gguf's gguf-convert-endian script",
        )
    metadata = _metadata(gg, reader)
    size = os.path.getsize(path)
    layouts: dict[str, _Layout] = {}
    for t in reader.tensors:
        qtype = gg.GGMLQuantizationType(int(t.tensor_type))
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        start, nbytes = int(t.data_offset), int(t.n_bytes)
        if start + nbytes > size:
            raise CheckpointError(
                f"is truncated: tensor {t.name!r} needs bytes up to {start + nbytes}, "
                f"the file has {size}",
                path=label,
                hint="download or convert it again",
            )
        layouts[t.name] = _Layout(t.name, _dtype(gg, qtype, t.name, label), qtype, shape, start)
    del reader  # its numpy memmap goes with it; data is read through our own mapping
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
    if mm is None:
        raise CheckpointError("is empty", path=label)
    tensors = {name: lay.ref(mm, gg) for name, lay in layouts.items()}
    return GGUFCheckpoint(
        label,
        NAME,
        tensors,
        metadata=metadata,
        layouts=layouts,
        mm=mm,
        closers=[lambda: close_mmap(mm)],
    )


# -- header -------------------------------------------------------------------------------
def _metadata(gg: Any, reader: Any) -> dict[str, str]:
    """Header facts as strings: GGUF version, architecture, block count, quantization
    version, file type (llama.cpp's name), and the architecture's shape keys."""
    fields = reader.fields
    out: dict[str, str] = {}

    def scalar(key: str) -> Any:
        f = fields.get(key)
        if f is None or not f.types or f.types[0] == gg.GGUFValueType.ARRAY:
            return None
        return f.contents()

    version = scalar("GGUF.version")
    if version is not None:
        out["gguf.version"] = str(version)
    arch = scalar("general.architecture")
    for key in ("general.architecture", "general.name", "general.quantization_version"):
        v = scalar(key)
        if v is not None:
            out[key] = str(v)
    ftype = scalar("general.file_type")
    if ftype is not None:
        try:
            out["general.file_type"] = gg.LlamaFileType(int(ftype)).name
        except ValueError:
            out["general.file_type"] = str(ftype)
    if arch is not None:
        for key in _ARCH_KEYS:
            v = scalar(f"{arch}.{key}")
            if v is not None:
                out[f"{arch}.{key}"] = str(v)
    return out


def _dtype(gg: Any, qtype: Any, name: str, label: str) -> dtypes.DType:
    plain = _PLAIN.get(qtype.name)
    if plain is not None:
        return dtypes.from_name(plain)
    block_size, block_bytes = gg.GGML_QUANT_SIZES[qtype]
    if not _can_dequantize(gg, qtype, block_bytes):
        raise CheckpointError(
            f"tensor {name!r} is {qtype.name}, which the installed gguf package cannot dequantize",
            path=label,
            hint="upgrade it: pip install -U gguf",
        )
    return dtypes.quantized(qtype.name, block_size, block_bytes)


_DEQUANTIZABLE: dict[int, bool] = {}


def _can_dequantize(gg: Any, qtype: Any, block_bytes: int) -> bool:
    """Whether ``gguf.quants`` decodes this type (tried once on one all-zero block)."""
    if int(qtype) not in _DEQUANTIZABLE:
        try:
            gg.quants.dequantize(np.zeros((1, block_bytes), dtype=np.uint8), qtype)
            ok = True
        except NotImplementedError:
            ok = False
        _DEQUANTIZABLE[int(qtype)] = ok
    return _DEQUANTIZABLE[int(qtype)]


# -- data ---------------------------------------------------------------------------------
class _Layout:
    """Where one tensor's bytes are and how to read them."""

    __slots__ = ("dtype", "name", "qtype", "shape", "start")

    def __init__(
        self, name: str, dtype: dtypes.DType, qtype: Any, shape: tuple[int, ...], start: int
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.qtype = qtype
        self.shape = shape
        self.start = start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.dtype.storage_nbytes(self.numel)

    def storage(self, mm: mmap.mmap) -> np.ndarray:
        return np.frombuffer(mm, dtype=np.uint8, count=self.nbytes, offset=self.start)

    def elements(
        self, mm: mmap.mmap, gg: Any, row_order: np.ndarray | None = None
    ) -> Callable[[], Elements]:
        """The loader: a zero-copy view, or a ChunkedArray (quantized or rows reordered)."""
        dt, numel = self.dtype, self.numel
        row_len = self.shape[-1] if self.shape else 1
        if not dt.is_quantized and row_order is None:
            return lambda: np.frombuffer(mm, dtype=dt.storage, count=numel, offset=self.start)
        if dt.is_quantized:
            qtype = self.qtype
            block_size, block_bytes = dt.block_size, dt.block_bytes

            def decode(raw: np.ndarray) -> np.ndarray:
                # One row of many blocks: gguf decodes them in one vectorised call.
                out: np.ndarray = gg.quants.dequantize(raw.reshape(1, -1), qtype)
                return out.reshape(-1)
        else:
            block_size, block_bytes = 1, dt.itemsize
            elem = dt.storage

            def decode(raw: np.ndarray) -> np.ndarray:
                return raw.view(elem)

        def load() -> Elements:
            return chunked.blocked(
                self.storage(mm),
                size=numel,
                dtype=dt.storage,
                block_size=block_size,
                block_bytes=block_bytes,
                decode=decode,
                row_len=row_len if row_order is not None else 0,
                row_order=row_order,
            )

        return load

    def ref(
        self,
        mm: mmap.mmap,
        gg: Any,
        *,
        name: str | None = None,
        row_order: np.ndarray | None = None,
        transpose: bool = False,
    ) -> TensorRef:
        start, nbytes = self.start, self.nbytes
        loader = self.elements(mm, gg, row_order)
        shape = self.shape
        if transpose:
            plain = self.elements(mm, gg)
            shape = (self.shape[1], self.shape[0])

            def loader() -> Elements:
                arr = plain()
                assert isinstance(arr, np.ndarray)  # transpose is offered for plain types only
                return chunked.transposed(arr.reshape(self.shape))

        # A reordered or transposed view reads scattered pages: release them all at the end.
        ranged = row_order is None and not transpose
        return TensorRef(
            name or self.name,
            self.dtype,
            shape,
            loader,
            release=lambda: page_release(mm, start, start + nbytes),
            release_range=(lambda a, b: page_release(mm, start + a, start + b)) if ranged else None,
            offset=start,
        )


def unpermute_rows(n_rows: int, n_head: int) -> np.ndarray:
    """Row order that undoes llama.cpp's RoPE permutation of a Q/K projection.

    The converter stores ``w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2)``: within a head of
    ``d`` rows, stored row ``2j + t`` is source row ``t*d/2 + j``. Element ``i`` of the
    result is the stored row that holds source row ``i``.
    """
    if n_head <= 0 or n_rows % (2 * n_head):
        raise ValueError(f"{n_rows} rows do not split into {n_head} heads of even size")
    half = n_rows // n_head // 2
    stored = np.arange(n_rows).reshape(n_head, half, 2)  # stored row index by (h, j, t)
    return np.ascontiguousarray(stored.swapaxes(1, 2)).reshape(-1)  # source order (h, t, j)


class GGUFCheckpoint(Checkpoint):
    """A GGUF file: lazy tensors plus what mapping onto HF names needs."""

    def __init__(
        self,
        path: str,
        format: str,
        tensors: dict[str, TensorRef],
        *,
        metadata: dict[str, str],
        layouts: dict[str, _Layout],
        mm: mmap.mmap,
        closers: list[Callable[[], None]],
    ) -> None:
        super().__init__(path, format, tensors, metadata=metadata, closers=closers)
        self._layouts = layouts
        self._mm = mm

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def map_onto(self, other: Checkpoint) -> tuple[Checkpoint, NameMapping] | None:
        if other.format == NAME or not other.tensors:
            return None
        gg = load_gguf_package()
        arch_name = self.architecture or "?"
        arch = next((a for a, n in gg.MODEL_ARCH_NAMES.items() if n == arch_name), None)
        scheme = f"GGUF {arch_name}"
        if arch is None:
            return self, NameMapping(
                scheme + " (architecture unknown to the gguf package)",
                0,
                len(self.tensors),
                tuple(self.tensors),
            )
        n_blocks = int(self.metadata.get(f"{arch_name}.block_count", "0") or 0)
        name_map = gg.get_tensor_name_map(arch, n_blocks)
        to_hf: dict[str, str] = {}
        for theirs in other.tensors:
            g = name_map.get_name(theirs, try_suffixes=(".weight", ".bias"))
            if g is not None and g in self._layouts and g not in to_hf:
                to_hf[g] = theirs
        n_head = int(self.metadata.get(f"{arch_name}.attention.head_count", "0") or 0)
        n_kv = int(self.metadata.get(f"{arch_name}.attention.head_count_kv", "0") or 0) or n_head
        permuted, transposed, kept_t = [], [], []
        refs: dict[str, TensorRef] = {}
        for g, lay in self._layouts.items():
            hf = to_hf.get(g)
            if hf is None:
                refs[g] = self.tensors[g]
                continue
            row_order = None
            heads = _rope_heads(arch_name, g, n_head, n_kv)
            if heads and lay.shape and lay.shape[0] % (2 * heads) == 0:
                row_order = unpermute_rows(lay.shape[0], heads)
                permuted.append(hf)
            their = other.tensors[hf].shape
            transpose = (
                len(lay.shape) == 2 and their == lay.shape[::-1] and their != lay.shape
            ) and row_order is None
            if transpose and lay.dtype.is_quantized:
                transpose = False  # decoding columns of blocks is not bounded: shown as is
                kept_t.append(hf)
            elif transpose:
                transposed.append(hf)
            refs[hf] = lay.ref(self._mm, gg, name=hf, row_order=row_order, transpose=transpose)
        transforms: dict[str, tuple[str, ...]] = {}
        if permuted:
            transforms["RoPE permutation"] = tuple(permuted)
        if transposed:
            transforms["transpose"] = tuple(transposed)
        if kept_t:
            transforms["transpose (quantized: not undone)"] = tuple(kept_t)
        # The view shares the file: closing either closes the mapping.
        view = Checkpoint(
            self.path, self.format, refs, metadata=self.metadata, closers=self._closers
        )
        unmapped = tuple(g for g in self._layouts if g not in to_hf)
        return view, NameMapping(scheme, len(to_hf), len(self._layouts), unmapped, transforms)


def _rope_heads(arch: str, gguf_name: str, n_head: int, n_kv: int) -> int:
    """Heads of the RoPE permutation the converter applied to this tensor (0: none)."""
    if arch not in ROPE_PERMUTED:
        return 0
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[3] in ("weight", "bias"):
        if parts[2] == "attn_q":
            return n_head
        if parts[2] == "attn_k":
            return n_kv
    return 0
