"""The HuggingFace folder writer: weight files rewritten, every other file copied.

``layout(directory)`` finds the weight files the reader reads (``formats.hf.CANDIDATES``, first
present wins): one file, or an index (``*.index.json``) and its shards, each shard with its own
file layout (safetensors or PyTorch). A folder that also holds another candidate (both
``model.safetensors`` and ``pytorch_model.bin``) is refused: the merge would leave the other
copy of the weights stale. ``write`` gives each tensor the shard the original folder gave it
(a new tensor goes to the last shard), writes each shard with its format's writer (a shard
left with no tensors is dropped), rewrites the index (``weight_map`` in the original order,
``metadata.total_size`` recomputed, every other key kept) and copies every other file and
folder (config, tokenizer, ...) from the original byte for byte (symlinks followed, a
``.git`` left out).
This module must not import torch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..formats.hf import CANDIDATES
from .base import OutTensor, atomic_file

NAME = "huggingface"


@dataclass(frozen=True)
class Shard:
    file: str  # path relative to the folder
    format: str  # a file writer's NAME
    layout: Any  # that writer's Layout
    names: tuple[str, ...]  # the tensors the original put in this shard


@dataclass(frozen=True)
class Layout:
    source: str  # the original folder (other files are copied from it)
    index_name: str | None
    index: dict[str, Any] | None
    index_newline: bool
    shards: tuple[Shard, ...]
    weight_files: frozenset[str]  # what is rewritten, never copied


class Refused(Exception):
    """The folder cannot be rewritten faithfully (the message says why)."""


def layout(
    directory: str, shard_layout: Callable[[str, set[str] | None], tuple[str, Any]]
) -> Layout:
    """The weight layout of ``directory``; ``shard_layout(file, names)`` gives a shard's
    ``(format, layout)`` (the package's per-file container test; ``names``: the tensors the
    index puts in it, None for a single weight file holding them all)."""
    present = [
        (n, is_index) for n, is_index in CANDIDATES if os.path.isfile(os.path.join(directory, n))
    ]
    if not present:
        raise Refused("no weight file the reader reads")
    (main, is_index), others = present[0], present[1:]
    if others:
        raise Refused(
            f"holds {main} and also {', '.join(n for n, _ in others)}; the merged folder would "
            "keep a stale copy of the weights"
        )
    if not is_index:
        fmt, lay = shard_layout(os.path.join(directory, main), None)
        return Layout(directory, None, None, False, (Shard(main, fmt, lay, ()),), frozenset([main]))
    with open(os.path.join(directory, main), encoding="utf-8") as f:
        text = f.read()
    index = json.loads(text)
    weight_map: dict[str, str] = index["weight_map"]
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(tensor)
    shards = []
    for file in sorted(by_shard):
        fmt, lay = shard_layout(os.path.join(directory, file), set(by_shard[file]))
        shards.append(Shard(file, fmt, lay, tuple(by_shard[file])))
    return Layout(
        directory,
        main,
        index,
        text.endswith("\n"),
        tuple(shards),
        frozenset([main, *by_shard]),
    )


def assign(layout: Layout, tensors: Mapping[str, OutTensor]) -> dict[str, dict[str, OutTensor]]:
    """Shard file -> the tensors written to it (the original's shard; new tensors: the last)."""
    home = {name: s.file for s in layout.shards for name in s.names}
    last = layout.shards[-1].file
    out: dict[str, dict[str, OutTensor]] = {s.file: {} for s in layout.shards}
    if layout.index is None:  # one weight file: everything goes in it
        out[last] = dict(tensors)
        return out
    for name, t in tensors.items():
        out[home.get(name, last)][name] = t
    return out


#: Never copied: a clone's repository metadata is not part of the model.
NOT_COPIED = frozenset([".git"])


def _copy_others(layout: Layout, dest: str) -> None:
    """Copy every non-weight entry of the original folder. Symlinks are followed (a Hugging
    Face cache snapshot is a folder of links into its blob store: the copy holds the files)."""
    for entry in sorted(os.listdir(layout.source)):
        if entry in layout.weight_files or entry in NOT_COPIED:
            continue
        src = os.path.join(layout.source, entry)
        dst = os.path.join(dest, entry)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def write(
    layout: Layout,
    tensors: Mapping[str, OutTensor],
    dest: str,
    write_file: Callable[[str, Any, Mapping[str, OutTensor], Any], None],
) -> None:
    """Write the folder into ``dest`` (an empty directory); ``write_file(format, layout,
    tensors, f)`` writes one shard."""
    _copy_others(layout, dest)
    placed = assign(layout, tensors)
    written: list[str] = []
    for shard in layout.shards:
        part = placed[shard.file]
        if not part and layout.index is not None:
            continue
        path = os.path.join(dest, shard.file)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_file(path) as f:
            write_file(shard.format, shard.layout, part, f)
        written.append(shard.file)
    if layout.index is None or layout.index_name is None:
        return
    old_map: dict[str, str] = layout.index["weight_map"]
    where = {name: file for file, part in placed.items() for name in part}
    weight_map = {n: where[n] for n in old_map if n in where}
    weight_map.update({n: where[n] for n in tensors if n not in weight_map})
    index = dict(layout.index)
    meta = index.get("metadata")
    if isinstance(meta, dict) and "total_size" in meta:
        index["metadata"] = {**meta, "total_size": sum(t.nbytes for t in tensors.values())}
    index["weight_map"] = weight_map
    text = json.dumps(index, indent=2, ensure_ascii=False) + ("\n" if layout.index_newline else "")
    with open(os.path.join(dest, layout.index_name), "w", encoding="utf-8") as f:
        f.write(text)
