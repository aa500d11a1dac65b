"""The PyTorch reader: ``.pt .pth .bin .ckpt`` pickles, loaded safely, tensors handed to numpy.

``torch`` is imported inside ``open_path`` only, never at module import (it costs seconds and
is an optional extra); without it the user is told to install ``model-diff[torch]``. Files are
loaded with ``torch.load(weights_only=True)`` (memory-mapped for zip-format files); a pickle
that needs arbitrary code is refused with ``UnsafeCheckpointError`` unless the caller passed
``unsafe_pickle=True`` (the CLI's ``--unsafe-pickle``; git drivers never do).

What counts as the model's tensors (documented in the README):
- a training checkpoint's weights are unwrapped from the first of ``state_dict`` (also
  Lightning's), ``model_state_dict``, ``model``, ``module`` that holds tensors; the other
  top-level entries (optimizer state, epoch, ...) are listed in ``Checkpoint.skipped`` and
  its scalar ones (``epoch``, ``global_step``, ``pytorch-lightning_version``) are kept as
  ``Checkpoint.metadata`` strings;
- nested dicts inside the weights are flattened with dots (``{"encoder": {"w": t}}`` ->
  ``encoder.w``), which is how ``nn.Module.state_dict`` names them anyway;
- lists, tuples and other non-tensor values, and tensors model-diff cannot read (sparse,
  quantized, complex, on the meta device), are skipped and listed, never guessed at.
A ``module.``/``_orig_mod.`` wrapper prefix is left as saved: ``diff.align_names`` strips it
when only one side has it.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, TensorRef
from ..dtypes import DType, from_torch_name
from ..errors import CheckpointError, MissingDependencyError, UnsafeCheckpointError
from .base import ZIP_MAGIC, first_zip_member

NAME = "pytorch"
EXTENSIONS: tuple[str, ...] = (".pt", ".pth", ".bin", ".ckpt")
#: Keys under which training code stores the model's weights, in order of preference.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")


def sniff(head: bytes, path: str) -> bool:
    """A torch zip archive (first member ``<name>/data.pkl``) or a legacy pickle (``\\x80``
    followed by a protocol number)."""
    member = first_zip_member(head)
    if member is not None:
        return member.endswith("data.pkl")
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _import_torch(label: str) -> Any:
    try:
        import torch  # optional and slow to import: only when a pickle is read
    except ImportError:
        raise MissingDependencyError(
            "is a PyTorch checkpoint, and reading it needs torch, which is not installed",
            path=label,
            hint="pip install 'model-diff[torch]', or convert the file to safetensors",
        ) from None
    return torch


def _refusal_detail(message: str) -> tuple[bool, str]:
    """(needs arbitrary code?, the one line of torch's weights_only message that says why)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln:
            return True, ln
    for ln in lines:
        if ln.startswith("WeightsUnpickler error:"):
            rest = ln[len("WeightsUnpickler error:") :].strip()
            if rest:
                return False, rest
    detail = next((ln for ln in lines if "operand" in ln or "Unsupported" in ln), None)
    return False, detail or (lines[-1] if lines else "unknown reason")


def _load(torch: Any, path: str, label: str, unsafe_pickle: bool) -> Any:
    with open(path, "rb") as f:
        is_zip = f.read(4) == ZIP_MAGIC
    try:
        # torch's advisory warnings (pickle protocol, future defaults) are not the user's
        # business once the outcome is decided here; -W error must not turn them into failures.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=not unsafe_pickle, mmap=is_zip)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if not unsafe_pickle and msg.startswith("Weights only load failed"):
            needs_code, why = _refusal_detail(msg)
            if needs_code:
                raise UnsafeCheckpointError(
                    f"is a pickle that needs arbitrary code to load, refused ({why})",
                    path=label,
                    hint="if you trust this file, pass --unsafe-pickle "
                    "(unsafe_pickle=True); better, re-save it as a state dict "
                    "or safetensors",
                ) from None
            raise CheckpointError(
                f"cannot be loaded safely as a PyTorch checkpoint ({why})",
                path=label,
                hint="it is corrupt or not a torch.save file; if it is a pickle you trust, "
                "pass --unsafe-pickle",
            ) from None
        raise CheckpointError(
            f"is not a readable PyTorch checkpoint ({_first_line(e)})",
            path=label,
            hint="the file is corrupt or truncated; re-save or re-fetch it",
        ) from None
    except Exception as e:  # torch raises RuntimeError/EOFError/ValueError/... for bad bytes
        raise CheckpointError(
            f"is not a readable PyTorch checkpoint ({_first_line(e)})",
            path=label,
            hint="the file is corrupt or truncated; re-save or re-fetch it",
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _holds_tensors(torch: Any, obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, Mapping):
        return any(_holds_tensors(torch, v) for v in obj.values())
    return False


def _as_mapping(torch: Any, obj: Any) -> Any:
    # Only reachable with unsafe_pickle: a whole pickled nn.Module.
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    return obj


def _unwrap(
    torch: Any, obj: Any, label: str
) -> tuple[Mapping[Any, Any], str, list[str], dict[str, str]]:
    """(the weights mapping, its dotted prefix, skipped top-level entries, metadata)."""
    obj = _as_mapping(torch, obj)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"holds a {type(obj).__name__}, not a dict of tensors",
            path=label,
            hint="save model.state_dict(), not the object",
        )
    skipped: list[str] = []
    metadata: dict[str, str] = {}
    prefix = ""
    # A wrapped training checkpoint may itself be wrapped ({"model": {"state_dict": ...}}).
    for _ in range(3):
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        key = next(
            (
                k
                for k in WRAPPER_KEYS
                if k in obj and _holds_tensors(torch, _as_mapping(torch, obj[k]))
            ),
            None,
        )
        if key is None:
            break
        for k, v in obj.items():
            if k == key:
                continue
            skipped.append(prefix + str(k))
            if isinstance(v, (str, int, float, bool)):
                metadata[prefix + str(k)] = str(v)
        prefix = prefix + key + "."
        obj = _as_mapping(torch, obj[key])
    return obj, prefix, skipped, metadata


def _flatten(
    torch: Any,
    obj: Mapping[Any, Any],
    prefix: str,
    *,
    out: dict[str, Any],
    skipped: list[str],
    label: str,
) -> None:
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            if name in out:
                raise CheckpointError(
                    f"holds two tensors named {name!r} once nested dicts are flattened",
                    path=label,
                    hint="save a flat state dict",
                )
            out[name] = v
        elif isinstance(v, Mapping) and _holds_tensors(torch, v):
            _flatten(torch, v, name + ".", out=out, skipped=skipped, label=label)
        else:
            skipped.append(name)


def _loader(torch: Any, t: Any, dtype: DType) -> Callable[[], np.ndarray]:
    # numpy cannot hold bfloat16/float8 tensors directly: reinterpret the bits through an
    # integer view of the same width, then give them ml_dtypes' type (no copy either way).
    reinterpret = {
        "bfloat16": torch.int16,
        "float8_e4m3fn": torch.uint8,
        "float8_e5m2": torch.uint8,
    }.get(dtype.name)

    def load() -> np.ndarray:
        flat = t.detach().contiguous().reshape(-1)
        if reinterpret is not None:
            arr = flat.view(reinterpret).numpy().view(dtype.numpy)
        else:
            arr = flat.numpy()
        arr.flags.writeable = False  # like the mapped formats: readers hand out read-only data
        return np.asarray(arr)

    return load


_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _file_mappings(path: str) -> list[tuple[int, int]]:
    """Address ranges where this process maps ``path`` (Linux ``/proc/self/maps``; [] elsewhere)."""
    real = os.path.realpath(path)
    ranges: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(maxsplit=5)
                if len(parts) == 6 and parts[5] == real:
                    lo, hi = parts[0].split("-")
                    ranges.append((int(lo, 16), int(hi, 16)))
    except OSError:
        return []
    return ranges


def _page_releaser(t: Any, mappings: list[tuple[int, int]]) -> Callable[[], None] | None:
    """A release() for a tensor whose storage lies inside torch's mapping of the file.

    Only then: MADV_DONTNEED on a file-backed page nobody wrote just drops it (it is re-read
    from the file when touched again), whereas on ordinary memory it would zero the data. The
    closure holds the tensor, so the mapping cannot go away while release() is reachable.
    """
    if _MADV_DONTNEED is None or not mappings:
        return None
    storage = t.untyped_storage()
    start, size = storage.data_ptr(), storage.nbytes()
    if size == 0 or not any(lo <= start and start + size <= hi for lo, hi in mappings):
        return None
    libc = _libc()
    aligned = start - start % mmap.PAGESIZE
    length = start + size - aligned

    def release(keep: Any = t) -> None:
        libc.madvise(
            ctypes.c_void_p(aligned), ctypes.c_size_t(length), ctypes.c_int(_MADV_DONTNEED)
        )

    return release


def _readable_dtype(torch: Any, t: Any) -> DType | None:
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        return None
    try:
        return from_torch_name(str(t.dtype))
    except KeyError:
        return None


def open_path(path: str, *, label: str | None = None, unsafe_pickle: bool = False) -> Checkpoint:
    """Load a PyTorch checkpoint (safely unless ``unsafe_pickle``) and unwrap its weights."""
    label = label or path
    torch = _import_torch(label)
    obj = _load(torch, path, label, unsafe_pickle)
    root, prefix, skipped, metadata = _unwrap(torch, obj, label)
    del prefix  # names are the weights' own, not "state_dict.<name>"
    tensors: dict[str, Any] = {}
    _flatten(torch, root, "", out=tensors, skipped=skipped, label=label)
    mappings = _file_mappings(path)
    refs: dict[str, TensorRef] = {}
    for name, t in tensors.items():
        dtype = _readable_dtype(torch, t)
        if dtype is None:
            skipped.append(name)
            continue
        refs[name] = TensorRef(
            name,
            dtype,
            tuple(t.shape),
            _loader(torch, t, dtype),
            release=_page_releaser(t, mappings),
            source=label,
        )
    if not refs and skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        raise CheckpointError(
            f"holds no tensors model-diff can read (found: {shown})",
            path=label,
            hint="save model.state_dict() or the weights",
        )
    # Dropping the tensors lets torch unmap the file once no array view needs it.
    return Checkpoint(
        label, NAME, refs, metadata=metadata, skipped=skipped, closers=[tensors.clear, refs.clear]
    )
