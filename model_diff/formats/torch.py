"""The PyTorch reader: ``.pt .pth .bin .ckpt`` files read safely, lazily and without torch.

Two containers, both written by ``torch.save``: a **zip** archive (torch >= 1.6, and
TorchScript archives) and the **legacy** format (pickles back to back, then the raw
storages). This module says what the format is called, which files it claims and whether a
file's first bytes are one (``sniff``); the reading itself, a restricted unpickler that runs
nothing and lazy tensors over one read-only mapping, is in ``torch_read`` and is imported
only when a PyTorch file is opened, so every other reader's start-up (a safetensors
textconv in ``git log -p``) does not pay for it. This module must not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import first_zip_member

if TYPE_CHECKING:
    from ..checkpoint import Checkpoint

NAME = "pytorch"
EXTENSIONS: tuple[str, ...] = (".pt", ".pth", ".bin", ".ckpt")


def sniff(head: bytes, path: str) -> bool:
    """A torch zip archive (``<name>/data.pkl`` or a storage ``<name>/data/<key>`` first) or
    a legacy pickle (``\\x80`` followed by a protocol number)."""
    member = first_zip_member(head)
    if member is not None:
        parts = member.split("/")
        return member.endswith("data.pkl") or (len(parts) == 3 and parts[1] == "data")
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def open_path(path: str, *, label: str | None = None, unsafe_pickle: bool = False) -> Checkpoint:
    """Read a PyTorch checkpoint (zip, TorchScript or legacy) and find its weights
    (``unsafe_pickle``: with ``torch.load``, which runs the file's code)."""
    from .torch_read import read_path

    return read_path(path, label=label or path, unsafe_pickle=unsafe_pickle, fmt=NAME)
