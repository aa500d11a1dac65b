"""Fixture factories: write one state dict (name -> numpy array) in every format model-diff
reads, into a directory the test owns (``tmp_path``). Reusable by any test area::

    from tests.model_diff.formats.factories import WRITERS, save_hf_dir
    path = WRITERS["training-pt"](tmp_path, state)      # -> path of what was written

torch is imported only by the torch writers, so safetensors/numpy-only tests stay fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from model_diff.toy import save_safetensors

State = Mapping[str, np.ndarray]


def to_torch(state: State) -> dict[str, Any]:
    """numpy arrays -> torch tensors with the same bits (bfloat16/float8 included)."""
    import torch

    special = {
        "bfloat16": (np.int16, torch.bfloat16),
        "float8_e4m3fn": (np.uint8, torch.float8_e4m3fn),
        "float8_e5m2": (np.uint8, torch.float8_e5m2),
    }
    out: dict[str, Any] = {}
    for name, a in state.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name in special:
            carrier, tdt = special[a.dtype.name]
            out[name] = torch.from_numpy(a.view(carrier).copy()).view(tdt)
        else:
            out[name] = torch.from_numpy(a.copy())
    return out


def save_pt(
    path: str | os.PathLike[str],
    state: State,
    *,
    wrap: str | None = None,
    extra: Mapping[str, Any] | None = None,
    legacy: bool = False,
) -> Path:
    """``torch.save`` the state (optionally under key ``wrap``, with ``extra`` entries)."""
    import torch

    obj: dict[str, Any] = to_torch(state)
    if wrap is not None:
        obj = {wrap: obj}
    obj.update(extra or {})
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return Path(path)


def save_training_pt(path: str | os.PathLike[str], state: State) -> Path:
    """A typical training checkpoint: weights, optimizer state, epoch."""
    import torch

    opt = {
        "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)}},
        "param_groups": [{"lr": 1e-3, "params": [0]}],
    }
    return save_pt(
        path, state, wrap="model_state_dict", extra={"optimizer_state_dict": opt, "epoch": 3}
    )


def save_npz(path: str | os.PathLike[str], state: State, *, compressed: bool = False) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **state)
    return Path(path)


def save_hf_dir(
    directory: str | os.PathLike[str],
    state: State,
    *,
    shards: int = 1,
    weights: str = "safetensors",
    config: Mapping[str, Any] | None = None,
    adapter: bool = False,
) -> Path:
    """A HuggingFace model folder: ``model.safetensors`` (or ``pytorch_model.bin``), sharded
    with an index when ``shards > 1``, with ``config.json`` (adapter: ``adapter_*`` files and
    ``adapter_config.json``, no ``config.json``)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    stem, ext = ("model", ".safetensors") if weights == "safetensors" else ("pytorch_model", ".bin")
    if adapter:
        stem = "adapter_model"
        (d / "adapter_config.json").write_text(json.dumps(config or {"peft_type": "LORA", "r": 8}))
    else:
        (d / "config.json").write_text(json.dumps(config or {"model_type": "llama"}))

    def write(path: Path, part: State) -> None:
        if weights == "safetensors":
            save_safetensors(path, part, {"format": "pt"})
        else:
            save_pt(path, part)

    names = sorted(state)
    if shards == 1:
        write(d / f"{stem}{ext}", state)
        return d
    weight_map: dict[str, str] = {}
    for i in range(shards):
        part_names = names[i::shards]
        shard = f"{stem}-{i + 1:05d}-of-{shards:05d}{ext}"
        write(d / shard, {n: state[n] for n in part_names})
        weight_map.update({n: shard for n in part_names})
    total = sum(int(np.asarray(a).nbytes) for a in state.values())
    (d / f"{stem}{ext}.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    return d


#: format label -> writer(tmp directory, state) -> path to open.
WRITERS: dict[str, Callable[[Path, State], Path]] = {
    "safetensors": lambda d, s: (
        save_safetensors(d / "model.safetensors", s),
        d / "model.safetensors",
    )[1],
    "pt": lambda d, s: save_pt(d / "model.pt", s),
    "legacy-pt": lambda d, s: save_pt(d / "model.pth", s, legacy=True),
    "training-pt": lambda d, s: save_training_pt(d / "training.ckpt", s),
    "npz": lambda d, s: save_npz(d / "model.npz", s),
    "npz-compressed": lambda d, s: save_npz(d / "model_c.npz", s, compressed=True),
    "hf-dir": lambda d, s: save_hf_dir(d / "hf", s),
    "hf-sharded": lambda d, s: save_hf_dir(d / "hf_sharded", s, shards=3),
    "hf-bin-sharded": lambda d, s: save_hf_dir(d / "hf_bin", s, shards=2, weights="bin"),
}
