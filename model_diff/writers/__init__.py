"""Writing checkpoints back, in the format of an existing one, only where that is faithful.

``inspect_container(checkpoint)`` is the one test of what may be written back, decided from
what the reader found (``Checkpoint.structure``, ``skipped``, ``unchecked``, ``nesting``): it
returns a ``Container`` (the format and what the written file keeps of the original: metadata,
tensor order, nesting, shards, other files) or raises ``UnwritableCheckpointError`` naming
what would be lost. Writable are: safetensors, ``.npy``/``.npz``, a ``.pt``/``.bin`` that holds
only a (possibly nested) dict of tensors, and a HuggingFace folder of those. Not writable: a
training checkpoint (optimizer state, epoch counters: anything the reader lists in
``Checkpoint.skipped``), a pickle with objects, TorchScript, a folder with two copies of the
weights.

``write_checkpoint(container, tensors, out)`` writes ``tensors`` (``OutTensor``: bytes streamed
in bounded chunks) into ``out`` through a temporary beside it, renamed on success only.

This package must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..checkpoint import Checkpoint
from ..errors import CheckpointError, UnwritableCheckpointError
from . import hf, numpy, safetensors, torch
from .base import OutTensor, atomic_dir, atomic_file, copy_of, data_file

__all__ = [
    "Container",
    "OutTensor",
    "copy_of",
    "inspect_container",
    "unwritable_reason",
    "write_checkpoint",
]

_HINT = "merge the weights alone (e.g. the state_dict saved by itself, or safetensors)"


@dataclass(frozen=True)
class Container:
    """What a written checkpoint keeps from the original at ``path``."""

    path: str
    format: str  # the reader's name: safetensors, numpy, pytorch, huggingface
    layout: Any  # that writer's Layout


def _refusal(what: str, label: str) -> UnwritableCheckpointError:
    return UnwritableCheckpointError(what, path=label, hint=_HINT)


def _torch_layout(nesting: Any, label: str, names: set[str]) -> Any:
    """The PyTorch writer's layout: the reader's nesting, when it maps back onto ``names``."""
    if nesting is None:
        raise _refusal("was not read by model-diff's own PyTorch reader (--unsafe-pickle?)", label)
    if nesting.refused is not None:
        raise _refusal(f"holds {nesting.refused}, which a merged file cannot keep", label)
    if nesting.names() != names:
        raise _refusal("holds tensors nested in a way the reader's names do not map back to", label)
    return nesting


def _file_layout(
    path: str, label: str, names: set[str], checkpoint: Checkpoint | None = None
) -> tuple[str, Any]:
    """(format, layout) of one checkpoint file whose reader found tensors ``names``:
    ``checkpoint`` as the reader opened it, or (a shard of a folder) opened here."""
    from ..formats import detect_format, open_file

    real = data_file(path)
    fmt = checkpoint.format if checkpoint is not None else detect_format(real, name=path)
    if fmt == safetensors.NAME:
        return fmt, safetensors.layout(real, label=label)
    if fmt == numpy.NAME:
        return fmt, numpy.layout(real)
    if fmt == torch.NAME:
        if checkpoint is not None:
            return fmt, _torch_layout(checkpoint.nesting, label, names)
        with open_file(real, label=label, name=path) as shard:
            return fmt, _torch_layout(shard.nesting, label, names)
    raise _refusal(f"has no writer for format {fmt}", label)


def inspect_container(checkpoint: Checkpoint) -> Container:
    """The one test of what can be written back faithfully (see the module docstring).

    Decided from what the reader found: parts of the file it set aside (optimizer state,
    schedulers, loose tensors), entries that are not tensors, tensors it cannot read, and, for
    a PyTorch file, how the tensors nest (``Checkpoint.nesting``). The layout a writer keeps
    (metadata, order, shards) is read from ``Checkpoint.location``.
    """
    label = checkpoint.path
    p = checkpoint.location
    if p is None or not os.path.exists(p):
        raise CheckpointError(
            "was not read from a file or folder; there is no container to write back",
            path=label,
            hint="merge checkpoints opened from files (open_checkpoint)",
        )
    aside = [s for s in checkpoint.structure if not s.compared]
    if aside:
        shown = "; ".join(s.describe() for s in aside[:4]) + ("; ..." if len(aside) > 4 else "")
        raise _refusal(f"holds more than its weights ({shown}); a merged file would lose it", label)
    if checkpoint.skipped:
        shown = ", ".join(checkpoint.skipped[:4]) + (", ..." if len(checkpoint.skipped) > 4 else "")
        raise _refusal(
            f"holds entries besides the tensors ({shown}); a merged file would lose them", label
        )
    if checkpoint.unchecked:
        shown = ", ".join(f"{n} ({why})" for n, why in list(checkpoint.unchecked.items())[:3])
        raise _refusal(f"holds tensors model-diff cannot read: {shown}", label)
    if os.path.isdir(p):

        def shard_layout(file: str, names: set[str] | None) -> tuple[str, Any]:
            shard_label = os.path.join(label, os.path.relpath(file, p))
            return _file_layout(
                file, shard_label, set(checkpoint.tensors) if names is None else names
            )

        try:
            lay = hf.layout(p, shard_layout)
        except hf.Refused as e:
            raise _refusal(str(e), label) from None
        return Container(p, hf.NAME, lay)
    fmt, lay = _file_layout(p, label, set(checkpoint.tensors), checkpoint)
    return Container(p, fmt, lay)


def unwritable_reason(container: Container, tensors: Mapping[str, OutTensor]) -> str | None:
    """Why ``tensors`` cannot be written in ``container``'s format, or None."""
    if container.format == numpy.NAME:
        return numpy.unwritable(container.layout, tensors)
    if container.format == hf.NAME:
        for file, part in hf.assign(container.layout, tensors).items():
            shard = next(s for s in container.layout.shards if s.file == file)
            sub = Container(file, shard.format, shard.layout)
            if (why := unwritable_reason(sub, part)) is not None:
                return f"{file}: {why}"
    return None


def _write_file(fmt: str, layout: Any, tensors: Mapping[str, OutTensor], f: BinaryIO) -> None:
    writer = {safetensors.NAME: safetensors, numpy.NAME: numpy, torch.NAME: torch}[fmt]
    writer.write(layout, tensors, f)


def write_checkpoint(
    container: Container, tensors: Mapping[str, OutTensor], out: str | os.PathLike[str]
) -> None:
    """Write ``tensors`` in ``container``'s format to ``out``, atomically.

    Raises ``UnwritableCheckpointError`` before writing anything when the format cannot hold
    them (a bfloat16 tensor for an ``.npz``, two tensors for a ``.npy``).
    """
    dest = os.fspath(out)
    why = unwritable_reason(container, tensors)
    if why is not None:
        raise UnwritableCheckpointError(
            f"cannot be written as {container.format}: {why}", path=dest
        )
    if container.format == hf.NAME:
        with atomic_dir(dest) as tmp:
            hf.write(container.layout, tensors, tmp, _write_file)
        return
    with atomic_file(dest) as f:
        _write_file(container.format, container.layout, tensors, f)
