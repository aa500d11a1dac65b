"""The HuggingFace directory reader: a model (or adapter) folder as one Checkpoint.

Looks for, in order: ``model.safetensors.index.json``, ``model.safetensors``,
``pytorch_model.bin.index.json``, ``pytorch_model.bin``, then the adapter files
``adapter_model.safetensors`` and ``adapter_model.bin`` (PEFT folders carry no
``config.json``), and last a folder holding exactly one checkpoint file of any supported
extension beside ``config.json`` (``model.pt`` + ``config.json``: ``single_file``).
safetensors is preferred over bin when both exist. Training leftovers
(``training_args.bin``, ``optimizer.pt``, ``scheduler.pt``, ``rng_state*.pth``,
``trainer_state.json``) are never read. A sharded index is followed: each shard is opened
once (through the ordinary file opener, so LFS pointers and content detection apply) and the
tensors its ``weight_map`` assigns to it make up one Checkpoint whose ``close()`` closes every
shard. ``config.json`` (else ``adapter_config.json``) becomes ``Checkpoint.config``.
This module must not import torch itself.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..checkpoint import Checkpoint, TensorRef
from ..errors import CheckpointError
from . import base
from .base import load_json
from .files import DIRECTORY_FORMAT, is_checkpoint_name, open_file

NAME = DIRECTORY_FORMAT
EXTENSIONS: tuple[str, ...] = ()

#: (file, is an index) in order of preference.
CANDIDATES = (
    ("model.safetensors.index.json", True),
    ("model.safetensors", False),
    ("pytorch_model.bin.index.json", True),
    ("pytorch_model.bin", False),
    ("adapter_model.safetensors", False),
    ("adapter_model.bin", False),
)


#: Files that make their directory one checkpoint (sharded: the index; PEFT: the adapter).
FOLDER_MARKERS = (
    *(name for name, is_index in CANDIDATES if is_index),
    "adapter_model.safetensors",
    "adapter_model.bin",
)
#: Read into ``Checkpoint.config``.
CONFIG_FILES = ("config.json", "adapter_config.json")
_TRAINING = re.compile(
    r"(training_args\.bin|optimizer\.pt|scheduler\.pt|rng_state.*\.pth|trainer_state\.json)"
)


def is_training_file(name: str) -> bool:
    """A Trainer leftover saved beside the weights; never read as part of the model."""
    return _TRAINING.fullmatch(name) is not None


def single_file(directory: str) -> str | None:
    """The name of the one checkpoint file in ``directory`` when it holds exactly one (any
    extension a reader claims; training leftovers such as ``optimizer.pt`` not counted)
    beside ``config.json``; None otherwise."""
    if not os.path.isfile(os.path.join(directory, "config.json")):
        return None
    found = checkpoint_files(directory)
    return found[0] if len(found) == 1 else None


def is_model_folder(directory: str) -> bool:
    """Whether ``open_checkpoint(directory)`` reads the folder as one model: it holds a file
    of ``CANDIDATES`` or one checkpoint file beside ``config.json``."""
    return any(os.path.isfile(os.path.join(directory, n)) for n, _ in CANDIDATES) or (
        single_file(directory) is not None
    )


def checkpoint_files(directory: str) -> list[str]:
    """The checkpoint files directly in ``directory`` (by extension, any letter case; trainer
    leftovers excluded), sorted by name."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [
        n
        for n in names
        if is_checkpoint_name(n)
        and not is_training_file(n)
        and os.path.isfile(os.path.join(directory, n))
    ]


def sniff(head: bytes, path: str) -> bool:
    return False  # directories are recognised by open_checkpoint, not by content


def _read_json(path: str, label: str) -> Any:
    try:
        with open(path, "rb") as f:
            raw = f.read(base.MAX_JSON_BYTES + 1)
    except OSError as e:
        raise CheckpointError(
            f"{os.path.basename(path)} cannot be read ({e.strerror or e})",
            path=label,
            hint="check the file's permissions",
        ) from None
    return load_json(
        raw, what=os.path.basename(path), label=label, hint="fix or re-download the file"
    )


def _config(directory: str, label: str) -> dict[str, Any] | None:
    cfg_path = os.path.join(directory, "config.json")
    adapter_path = os.path.join(directory, "adapter_config.json")
    config: dict[str, Any] | None = None
    if os.path.isfile(cfg_path):
        raw = _read_json(cfg_path, label)
        if not isinstance(raw, dict):
            raise CheckpointError(
                "config.json is not a JSON object", path=label, hint="fix or re-download it"
            )
        config = raw
    if os.path.isfile(adapter_path):
        adapter = _read_json(adapter_path, label)
        if not isinstance(adapter, dict):
            raise CheckpointError(
                "adapter_config.json is not a JSON object", path=label, hint="fix or re-download it"
            )
        config = adapter if config is None else {**config, "adapter_config": adapter}
    return config


def _shard_path(directory: str, shard: object, index_name: str, label: str) -> str:
    if (
        not isinstance(shard, str)
        or not shard
        or os.path.isabs(shard)
        or ".." in shard.replace("\\", "/").split("/")
    ):
        raise CheckpointError(
            f"{index_name} names an invalid shard {shard!r}",
            path=label,
            hint="shards must be files inside the model directory",
        )
    return os.path.join(directory, shard)


def _open_index(
    directory: str, index_name: str, label: str, unsafe_pickle: bool
) -> tuple[dict[str, TensorRef], dict[str, str], list[str], dict[str, str], list[Checkpoint]]:
    index = _read_json(os.path.join(directory, index_name), label)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{index_name} has no weight_map", path=label, hint="fix or re-download the index file"
        )
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(_shard_path(directory, shard, index_name, label), []).append(tensor)
    for shard_path in by_shard:
        if not os.path.isfile(shard_path):
            raise CheckpointError(
                f"{index_name} refers to shard {os.path.basename(shard_path)}, which is missing",
                path=label,
                hint="download every shard listed in the index",
            )
    shards: list[Checkpoint] = []
    refs: dict[str, TensorRef] = {}
    skipped: list[str] = []
    unchecked: dict[str, str] = {}
    metadata: dict[str, str] = {}
    raw_meta = index.get("metadata")
    if isinstance(raw_meta, dict):
        metadata.update({str(k): str(v) for k, v in raw_meta.items()})
    try:
        for shard_path in sorted(by_shard):
            rel = os.path.relpath(shard_path, directory)
            shard = open_file(
                shard_path, label=os.path.join(label, rel), unsafe_pickle=unsafe_pickle
            )
            shards.append(shard)
            for tensor in by_shard[shard_path]:
                if tensor in shard.unchecked:
                    unchecked[tensor] = shard.unchecked[tensor]
                    continue
                if tensor not in shard.tensors:
                    raise CheckpointError(
                        f"{index_name} puts tensor {tensor!r} in shard {rel}, which does not "
                        "hold it",
                        path=label,
                        hint="re-download the shard and its index",
                    )
                refs[tensor] = shard.tensors[tensor]
            skipped.extend(f"{rel}:{n}" for n in shard.skipped)
            for k, v in shard.metadata.items():
                metadata.setdefault(k, v)
    except BaseException:
        for s in shards:
            s.close()
        raise
    return refs, metadata, skipped, unchecked, shards


def open_path(path: str, *, label: str | None = None, unsafe_pickle: bool = False) -> Checkpoint:
    """Open a HuggingFace model or adapter directory as one lazy Checkpoint."""
    label = label or path
    for name, is_index in CANDIDATES:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        config = _config(path, label)
        if is_index:
            refs, metadata, skipped, unchecked, shards = _open_index(
                path, name, label, unsafe_pickle
            )
            return Checkpoint(
                label,
                NAME,
                refs,
                metadata=metadata,
                config=config,
                skipped=skipped,
                closers=[s.close for s in shards],
                unchecked=unchecked,
            )
        inner = open_file(file, label=os.path.join(label, name), unsafe_pickle=unsafe_pickle)
        return inner.relabeled(label, format=NAME, config=config, closers=[inner.close])
    single = single_file(path)
    if single is not None:
        config = _config(path, label)
        inner = open_file(
            os.path.join(path, single),
            label=os.path.join(label, single),
            unsafe_pickle=unsafe_pickle,
        )
        return inner.relabeled(label, format=NAME, config=config, closers=[inner.close])
    looked_for = ", ".join(n for n, _ in CANDIDATES)
    several = checkpoint_files(path)
    if len(several) == 1:
        raise CheckpointError(
            f"is a directory, not a model folder: it holds one checkpoint file ({several[0]}) "
            "and no config.json",
            path=label,
            hint="pass the file itself, or put the model's config.json beside it",
        )
    if len(several) > 1:
        shown = ", ".join(several[:4]) + (
            f" and {len(several) - 4} more" if len(several) > 4 else ""
        )
        raise CheckpointError(
            f"is a directory of {len(several)} checkpoint files ({shown}), not one model",
            path=label,
            hint="pass one of the files; for a training run use `model-diff timeline DIR`",
        )
    raise CheckpointError(
        f"is a directory with no model weights model-diff reads (looked for {looked_for}, "
        "or one checkpoint file beside config.json)",
        path=label,
        hint="pass a checkpoint file, or a HuggingFace model directory",
    )
