"""Restricted unpickling of PyTorch checkpoints: no torch, nothing from the file ever runs.

``load_pickle(fp, persistent_load)`` reads one pickle with a ``pickle.Unpickler`` whose
``find_class`` hands out only:

- torch's tensor rebuild functions, turned into ``PickledTensor`` records (storage, offset,
  shape, strides, dtype: nothing is read yet) or ``UnreadableTensor`` (sparse, quantized,
  meta, nested ... tensors, recorded with the reason);
- torch storage types and dtypes, as plain descriptions;
- plain data: ``collections.OrderedDict``, sets, complex numbers, ``_codecs.encode`` (how
  protocol 2 spells bytes), and numpy's array / dtype / scalar reconstruction, each with its
  arguments checked so that no call can allocate more than the pickle itself holds.

Every other global (``os.system``, ``omegaconf.DictConfig``, ``argparse.Namespace``, a
project's classes, a pickled ``nn.Module``) becomes an inert ``PickledObject`` subclass that
records the arguments and state the pickle gives it and runs nothing, so the tensors beside
it are still read, without the class installed and without ``--unsafe-pickle``.
``PickledObject.children()`` exposes what it recorded (an ``nn.Module``'s ``_parameters`` /
``_buffers`` / ``_modules`` as its state dict would name them).

This module must not import torch.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

__all__ = [
    "STORAGE_KINDS",
    "PickledObject",
    "PickledTensor",
    "Storage",
    "StorageKind",
    "TorchDType",
    "UnreadableTensor",
    "load_pickle",
]


@dataclass(frozen=True)
class StorageKind:
    """A torch storage type named in the pickle (``torch.FloatStorage`` ...)."""

    name: str
    dtype: str  # canonical torch dtype name of its elements ("uint8" for UntypedStorage)
    itemsize: int


@dataclass(frozen=True)
class TorchDType:
    """A ``torch.<dtype>`` global: its canonical name and element size (0 if unknown)."""

    name: str
    itemsize: int


#: torch's legacy storage classes -> (element dtype, element size). New dtypes are saved as
#: an ``UntypedStorage`` plus an explicit dtype (``_rebuild_tensor_v3``).
STORAGE_KINDS: dict[str, tuple[str, int]] = {
    "DoubleStorage": ("float64", 8),
    "FloatStorage": ("float32", 4),
    "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2),
    "LongStorage": ("int64", 8),
    "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2),
    "CharStorage": ("int8", 1),
    "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
    "ComplexFloatStorage": ("complex64", 8),
    "ComplexDoubleStorage": ("complex128", 16),
    "QInt8Storage": ("qint8", 1),
    "QUInt8Storage": ("quint8", 1),
    "QInt32Storage": ("qint32", 4),
    "QUInt4x2Storage": ("quint4x2", 1),
    "QUInt2x4Storage": ("quint2x4", 1),
    "UntypedStorage": ("uint8", 1),
    "TypedStorage": ("uint8", 1),
}

#: ``torch.<name>`` dtype globals -> (canonical name, element size).
_TORCH_DTYPES: dict[str, tuple[str, int]] = {
    "float64": ("float64", 8),
    "double": ("float64", 8),
    "float32": ("float32", 4),
    "float": ("float32", 4),
    "float16": ("float16", 2),
    "half": ("float16", 2),
    "bfloat16": ("bfloat16", 2),
    "float8_e4m3fn": ("float8_e4m3fn", 1),
    "float8_e5m2": ("float8_e5m2", 1),
    "float8_e4m3fnuz": ("float8_e4m3fnuz", 1),
    "float8_e5m2fnuz": ("float8_e5m2fnuz", 1),
    "float8_e8m0fnu": ("float8_e8m0fnu", 1),
    "int64": ("int64", 8),
    "long": ("int64", 8),
    "int32": ("int32", 4),
    "int": ("int32", 4),
    "int16": ("int16", 2),
    "short": ("int16", 2),
    "int8": ("int8", 1),
    "uint8": ("uint8", 1),
    "uint16": ("uint16", 2),
    "uint32": ("uint32", 4),
    "uint64": ("uint64", 8),
    "bool": ("bool", 1),
    "complex32": ("complex32", 4),
    "chalf": ("complex32", 4),
    "complex64": ("complex64", 8),
    "cfloat": ("complex64", 8),
    "complex128": ("complex128", 16),
    "cdouble": ("complex128", 16),
    "qint8": ("qint8", 1),
    "quint8": ("quint8", 1),
    "qint32": ("qint32", 4),
    "quint4x2": ("quint4x2", 1),
    "quint2x4": ("quint2x4", 1),
}


class Storage:
    """One storage of the file (a zip member ``data/<key>``, or a legacy raw block): its key,
    element kind and size as the pickle records them. Where its bytes lie is the container
    reader's business (``offset`` is filled in by it)."""

    __slots__ = ("base", "byte_offset", "key", "kind", "location", "numel", "offset")

    def __init__(
        self,
        key: str,
        kind: StorageKind,
        numel: int,
        location: str,
        *,
        base: Storage | None = None,
        byte_offset: int = 0,
    ) -> None:
        self.key = key
        self.kind = kind
        self.numel = numel
        self.location = location
        self.base = base  # a legacy storage view: a slice of another storage
        self.byte_offset = byte_offset
        self.offset: int | None = None  # file offset of the first byte, set by the reader

    @property
    def nbytes(self) -> int:
        return self.numel * self.kind.itemsize

    def __repr__(self) -> str:
        return f"Storage({self.key!r}, {self.kind.name}, numel={self.numel})"


@dataclass
class PickledTensor:
    """A strided tensor over a storage, exactly as ``torch._utils._rebuild_tensor_v2`` would
    build it, with no data read."""

    storage: Storage
    storage_offset: int  # in elements of ``dtype``
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str  # canonical torch dtype name
    itemsize: int
    #: Why model-diff cannot read it (unsupported dtype), else None.
    unreadable: str | None = None
    requires_grad: bool = False
    #: What the pickle wraps the tensor in or attaches to it beyond its data (an
    #: ``nn.Parameter``, a subclass, backward hooks), which a file written from the tensor
    #: alone would lose; None for a plain tensor. Reading is not affected.
    wrapped: str | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass
class UnreadableTensor:
    """A tensor the file holds in a form model-diff does not read (sparse, quantized, on the
    meta device, nested, a subclass without storage...): kept only to be named."""

    reason: str
    shape: tuple[int, ...] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape) if self.shape is not None else 1


@dataclass
class ArrayTensor:
    """A tensor whose bytes the pickle itself holds as a numpy array
    (``_rebuild_device_tensor_from_numpy``: tensors saved from devices without storages)."""

    array: np.ndarray
    dtype: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim


class PickledObject:
    """An instance of a class the pickle names but model-diff does not run.

    Subclasses are made per class name (``placeholder_type``); instances record the
    arguments, state, list items and dict items the pickle gives them. Nothing else.
    """

    module: str = ""
    qualname: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items=[], dictitems={})
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # arguments were recorded by __new__

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def append(self, item: Any) -> None:
        self.__dict__["items"].append(item)

    def extend(self, items: Any) -> None:
        if isinstance(items, (list, tuple)):
            self.__dict__["items"].extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["dictitems"][key] = value

    @property
    def class_name(self) -> str:
        return f"{self.module}.{self.qualname}" if self.module else self.qualname

    def is_module(self) -> bool:
        """Whether this records an ``nn.Module``: a pickled one (state with ``_parameters``
        & co) or a TorchScript one (a ``__torch__.`` class)."""
        if self.module.startswith("__torch__"):
            return True
        state = self._state_dict()
        return state is not None and any(
            isinstance(state.get(k), Mapping) for k in ("_parameters", "_buffers", "_modules")
        )

    def _state_dict(self) -> dict[Any, Any] | None:
        state = self.__dict__["state"]
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged: dict[Any, Any] = {}
            for part in state:
                if isinstance(part, Mapping):
                    merged.update(part)
            return merged
        if isinstance(state, Mapping):
            return dict(state)
        return None

    def children(self) -> list[tuple[str, Any]]:
        """What this object holds, by name: an ``nn.Module``'s parameters, persistent buffers
        and submodules (state-dict names), else its recorded state, items and arguments."""
        state = self._state_dict()
        if state is not None and self.module.startswith("__torch__"):
            # TorchScript: attributes are parameters, buffers and submodules by name, beside
            # plain flags (``training``) that are no part of the weights.
            return [(str(k), v) for k, v in state.items() if not _is_plain(v)]
        if state is not None and self.is_module():
            out: list[tuple[str, Any]] = []
            params = state.get("_parameters")
            buffers = state.get("_buffers")
            skip = state.get("_non_persistent_buffers_set")
            skip = set(skip) if isinstance(skip, (set, frozenset, list, tuple)) else set()
            for group, exclude in ((params, set()), (buffers, skip)):
                if isinstance(group, Mapping):
                    out += [
                        (str(k), v) for k, v in group.items() if v is not None and k not in exclude
                    ]
            modules = state.get("_modules")
            if isinstance(modules, Mapping):
                out += [(str(k), v) for k, v in modules.items() if v is not None]
            return out
        out = []
        if state is not None:
            out += [(str(k), v) for k, v in state.items()]
        elif self.__dict__["state"] is not None:
            out.append(("state", self.__dict__["state"]))
        out += [(str(k), v) for k, v in self.__dict__["dictitems"].items()]
        out += [(str(i), v) for i, v in enumerate(self.__dict__["items"])]
        if not out:
            out += [(str(i), v) for i, v in enumerate(self.__dict__["args"])]
        return out

    def __repr__(self) -> str:
        return f"<{self.class_name} (not run)>"


def _is_plain(v: object) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, bytes))


def placeholder_type(module: str, name: str) -> type[PickledObject]:
    """A fresh inert class standing for ``module.name``."""
    return type("PickledObject", (PickledObject,), {"module": module, "qualname": name})


# -- allowed callables, each checking its arguments ------------------------------------------

#: numpy arrays in a pickle carry their bytes inline; the shape passed to ``_reconstruct``
#: is always (0,) when numpy writes it, so a larger one is refused (it would allocate).
_NDARRAY = object()


class _Refused(Exception):
    """An allowed callable got arguments it does not accept: the call becomes a placeholder."""


def _codecs_encode(text: object, encoding: object = "utf-8", errors: object = "strict") -> bytes:
    if (
        not isinstance(text, str)
        or encoding not in ("latin1", "latin-1", "utf-8", "utf8")
        or errors != "strict"
    ):
        raise _Refused
    return text.encode(str(encoding))


def _ordered_dict(*args: object) -> collections.OrderedDict[Any, Any]:
    if not args:
        return collections.OrderedDict()
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        pairs = args[0]
        if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            return collections.OrderedDict(pairs)
    raise _Refused


def _from_sequence(kind: type) -> Callable[..., Any]:
    def build(*args: object) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (list, tuple, set, frozenset, str, bytes)):
            return kind(args[0])
        raise _Refused

    return build


def _scalar(kind: type) -> Callable[..., Any]:
    def build(*args: object) -> Any:
        if all(isinstance(a, (int, float, str, bytes, bool)) for a in args) and len(args) <= 2:
            if any(isinstance(a, (str, bytes)) and len(a) > 4096 for a in args):
                raise _Refused
            return kind(*args)
        raise _Refused

    return build


def _bytearray(*args: object) -> bytearray:
    if not args:
        return bytearray()
    if isinstance(args[0], bytes) and len(args) == 1:
        return bytearray(args[0])
    if isinstance(args[0], str) and len(args) == 2 and isinstance(args[1], str):
        return bytearray(args[0], args[1])
    raise _Refused  # bytearray(int) would allocate whatever the file asks for


def _np_reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    if subtype is not _NDARRAY or shape not in ((0,), [0]) or not isinstance(dtype, bytes):
        raise _Refused
    return np.ndarray((0,), dtype=np.uint8)


def _np_dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    if not isinstance(spec, str) or len(spec) > 16:
        raise _Refused
    return np.dtype(spec, bool(align), bool(copy))


def _np_scalar(dtype: object, data: object = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise _Refused
    return np.frombuffer(data, dtype=dtype, count=1)[0] if len(data) == dtype.itemsize else None


def _torch_size(*args: object) -> tuple[Any, ...]:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return tuple(args[0])
    raise _Refused


def _torch_device(*args: object) -> str:
    return ":".join(str(a) for a in args if isinstance(a, (str, int)))


def _get_layout(name: object) -> str:
    return str(name)


def _shape_of(x: object) -> tuple[int, ...] | None:
    if isinstance(x, (list, tuple)) and all(isinstance(s, int) for s in x):
        return tuple(x)
    return None


def _rebuild_tensor(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    dtype: TorchDType | None = None,
) -> PickledTensor | UnreadableTensor:
    shape, strides = _shape_of(size), _shape_of(stride)
    if not isinstance(storage, Storage):
        return UnreadableTensor("its storage is not a torch storage record", shape)
    if (
        shape is None
        or strides is None
        or len(shape) != len(strides)
        or not isinstance(storage_offset, int)
        or isinstance(storage_offset, bool)
        or storage_offset < 0
        or any(s < 0 for s in shape + strides)
    ):
        return UnreadableTensor("its size, stride or offset is malformed", shape)
    name, itemsize = (
        (dtype.name, dtype.itemsize)
        if dtype is not None
        else (storage.kind.dtype, storage.kind.itemsize)
    )
    reason = None
    if name.startswith(("q", "complex")) or itemsize == 0:
        reason = f"dtype {name} is not read by model-diff"
    return PickledTensor(storage, storage_offset, shape, strides, name, itemsize, reason)


def _with_flags(
    t: PickledTensor | UnreadableTensor, requires_grad: object, hooks: object, metadata: object
) -> PickledTensor | UnreadableTensor:
    if isinstance(t, PickledTensor):
        t.requires_grad = requires_grad is True
        if hooks:
            t.wrapped = "a tensor with backward hooks"
        elif metadata:
            t.wrapped = "a tensor with extra metadata"
    return t


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> PickledTensor | UnreadableTensor:
    t = _rebuild_tensor(storage, storage_offset, size, stride)
    return _with_flags(t, requires_grad, backward_hooks, metadata)


def _rebuild_tensor_v3(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    dtype: object = None,
    metadata: object = None,
) -> PickledTensor | UnreadableTensor:
    if not isinstance(dtype, TorchDType):
        return UnreadableTensor("its dtype is not a torch dtype", _shape_of(size))
    t = _rebuild_tensor(storage, storage_offset, size, stride, dtype)
    return _with_flags(t, requires_grad, backward_hooks, metadata)


def _wrapping(what: str) -> Callable[..., object]:
    """A rebuild function whose result is its first argument, the tensor inside (what counts
    for reading), marked as wrapped in ``what``."""

    def rebuild(data: object, *args: object) -> object:
        if isinstance(data, PickledTensor):
            data.wrapped = what
        return data

    return rebuild


_rebuild_parameter = _wrapping("an nn.Parameter")


def _rebuild_from_type(func: object, new_type: object, args: object, state: object) -> object:
    # A tensor subclass: the tensor inside is what counts; the subclass is never built.
    if func in _REBUILDERS.values() and isinstance(args, tuple):
        t = func(*args)  # type: ignore[operator]
        if isinstance(t, PickledTensor):
            t.wrapped = "a tensor subclass (or a tensor with attributes)"
        return t
    return UnreadableTensor("a tensor subclass rebuilt by code model-diff does not run")


def _rebuild_from_numpy(data: object, dtype: object, *rest: object) -> object:
    if isinstance(data, np.ndarray) and isinstance(dtype, TorchDType):
        return ArrayTensor(np.ascontiguousarray(data), dtype.name)
    return UnreadableTensor("a device tensor without numpy data")


def _unreadable(reason: str) -> Callable[..., UnreadableTensor]:
    def build(*args: object, **kwargs: object) -> UnreadableTensor:
        return UnreadableTensor(reason)

    return build


_REBUILDERS: dict[str, Callable[..., Any]] = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor_v3": _rebuild_tensor_v3,
}

_TORCH_UTILS: dict[str, Callable[..., Any]] = {
    **_REBUILDERS,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter,
    "_rebuild_device_tensor_from_numpy": _rebuild_from_numpy,
    "_rebuild_meta_tensor_no_storage": _unreadable("a tensor on the meta device (no data)"),
    "_rebuild_sparse_tensor": _unreadable("a sparse tensor"),
    "_rebuild_sparse_csr_tensor": _unreadable("a sparse tensor"),
    "_rebuild_qtensor": _unreadable("a quantized tensor"),
    "_rebuild_wrapper_subclass": _unreadable("a tensor subclass without storage"),
    "_rebuild_nested_tensor": _unreadable("a nested tensor"),
    "_rebuild_xla_tensor": _unreadable("an XLA tensor"),
    "_rebuild_mlc_tensor": _unreadable("an MLC tensor"),
    "_rebuild_device_tensor_from_cpu_tensor": _wrapping("a tensor saved from a device"),
}

_BUILTINS: dict[str, Callable[..., Any]] = {
    "set": _from_sequence(set),
    "frozenset": _from_sequence(frozenset),
    "list": _from_sequence(list),
    "tuple": _from_sequence(tuple),
    "complex": _scalar(complex),
    "float": _scalar(float),
    "int": _scalar(int),
    "bool": _scalar(bool),
    "str": _scalar(str),
    "bytes": _scalar(bytes),
    "bytearray": _bytearray,
}

_NUMPY_CORE = {"_reconstruct": _np_reconstruct, "scalar": _np_scalar}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("_codecs", "encode"): _codecs_encode,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
    ("torch.serialization", "_get_layout"): _get_layout,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _np_dtype,
    **{("builtins", k): v for k, v in _BUILTINS.items()},
    **{("torch._utils", k): v for k, v in _TORCH_UTILS.items()},
    **{
        (m, k): v
        for m in ("numpy.core.multiarray", "numpy._core.multiarray")
        for k, v in _NUMPY_CORE.items()
    },
}

#: Python 2 spellings that pickle protocol < 3 writes.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _guarded(
    fn: Callable[..., Any], module: str, name: str, unpickler: _Unpickler
) -> Callable[..., Any]:
    """``fn``, where refused arguments yield an inert record instead of an error."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (_Refused, TypeError, ValueError):
            return unpickler.placeholder(module, name)(*args, **kwargs)

    return call


class _Unpickler(pickle.Unpickler):
    def __init__(self, fp: IO[bytes], persistent_load: Callable[[Any], Any]) -> None:
        super().__init__(fp, encoding="utf-8")
        self._persistent = persistent_load
        self._types: dict[tuple[str, str], type[PickledObject]] = {}
        #: Classes and functions the pickle named and that were recorded, not run.
        self.not_run: set[str] = set()

    def placeholder(self, module: str, name: str) -> type[PickledObject]:
        key = (module, name)
        if key not in self._types:
            self._types[key] = placeholder_type(module, name)
            self.not_run.add(f"{module}.{name}")
        return self._types[key]

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        if module in ("torch", "torch.cuda", "torch.storage") and name in STORAGE_KINDS:
            dtype, size = STORAGE_KINDS[name]
            return StorageKind(name, dtype, size)
        if module == "torch" and name in _TORCH_DTYPES:
            return TorchDType(*_TORCH_DTYPES[name])
        if module == "copyreg" and name == "_reconstructor":
            return self._reconstructor
        allowed = _ALLOWED.get((module, name))
        if allowed is _NDARRAY or allowed in _REBUILDERS.values():
            return allowed  # never raises: odd arguments give an UnreadableTensor
        if allowed is not None:
            return _guarded(allowed, module, name, self)
        return self.placeholder(module, name)

    def _reconstructor(self, cls: Any, base: Any, state: Any = None) -> Any:
        # copyreg's protocol-0/1 object construction: only ever for an inert class.
        if isinstance(cls, type) and issubclass(cls, PickledObject):
            return cls(state) if state is not None else cls()
        return self.placeholder("copyreg", "_reconstructor")(cls, base, state)

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent(pid)


def load_pickle(fp: IO[bytes], persistent_load: Callable[[Any], Any]) -> tuple[Any, set[str]]:
    """One pickle from ``fp`` (read exactly up to its STOP opcode) -> (object, names of the
    classes and functions recorded instead of run).

    Raises ``pickle.UnpicklingError``, ``EOFError``, ``ValueError`` ... for bytes that are
    not a pickle; the caller turns them into one-line errors.
    """
    unpickler = _Unpickler(fp, persistent_load)
    obj = unpickler.load()
    return obj, unpickler.not_run
