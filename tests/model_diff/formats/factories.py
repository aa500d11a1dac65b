"""Fixture factories: write one state dict (name -> numpy array) in every format model-diff
reads, into a directory the test owns (``tmp_path``). Reusable by any test area::

    from tests.model_diff.formats.factories import WRITERS, save_hf_dir
    path = WRITERS["training-pt"](tmp_path, state)      # -> path of what was written

torch is imported only by the torch writers, so safetensors/numpy-only tests stay fast.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
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


def save_big_endian_pt(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Rewrite the zip checkpoint ``src`` (as torch.save wrote it on a little-endian machine)
    as a big-endian machine would have written it: ``byteorder`` says ``big`` and every
    storage's elements are byte-swapped. torch cannot write one here, so the test builds it.
    The element size of each storage is read from ``data.pkl`` with torch's own classes."""
    sizes: dict[str, int] = {}

    def record(storage: tuple[str, Any], itemsize: int) -> None:
        sizes.setdefault(storage[0], itemsize)

    legacy_sizes = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4}
    legacy_sizes.update({"Short": 2, "Char": 1, "Byte": 1, "Bool": 1})

    def v2(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> None:
        record(storage, legacy_sizes[storage[1].__name__.removesuffix("Storage")])

    def v3(
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        rg: Any,
        hooks: Any,
        dtype: Any,
        *rest: Any,
    ) -> None:
        record(storage, dtype.itemsize)

    class Recorder(pickle.Unpickler):  # trusted local data: torch's real classes are fine
        def persistent_load(self, pid: Any) -> Any:
            return (pid[2], pid[1])

        def find_class(self, module: str, name: str) -> Any:
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return v2
            if module == "torch._utils" and name == "_rebuild_tensor_v3":
                return v3
            if module == "torch._utils" and name.startswith("_rebuild_parameter"):
                return lambda data, *a: data
            return super().find_class(module, name)

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        pkl = next(n for n in zin.namelist() if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        Recorder(zin.open(pkl)).load()
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == f"{prefix}byteorder":
                data = b"big"
            elif info.filename.startswith(f"{prefix}data/"):
                n = sizes.get(info.filename[len(prefix) + len("data/") :], 1)
                if n > 1:
                    data = np.frombuffer(data, f"<u{n}").byteswap().tobytes()
            zout.writestr(info.filename, data)
    return Path(dst)


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
