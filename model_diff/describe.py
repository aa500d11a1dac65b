"""``model-diff inspect``: one checkpoint described as text or strict JSON.

Pure rendering over a ``Checkpoint``; the CLI does the I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

from . import __version__
from .checkpoint import Checkpoint
from .terminal import guard_json, guard_lines, printable


def inspect_dict(ckpt: Checkpoint, label: str) -> dict[str, Any]:
    """Everything ``inspect`` shows, JSON-safe (non-finite floats become None)."""
    infos = ckpt.tensor_info
    out = {
        "tool": {"name": "model-diff", "version": __version__},
        **ckpt.describe(label),
        "metadata": dict(sorted(ckpt.metadata.items())),
        "config": ckpt.config,
        "structure": [s.to_dict() for s in ckpt.structure],
        "choice": ckpt.choice,
        "skipped": ckpt.skipped,
        "unchecked": ckpt.unchecked,
        "nonfinite_tensors": [n for n, i in infos.items() if i.nan_count or i.inf_count],
        "tensor_info": [_finite(infos[n].to_dict()) for n in ckpt.tensors],
    }
    mix = storage_mix(ckpt)
    if mix is not None:
        out["storage_types"] = mix
    return out


def storage_mix(ckpt: Checkpoint) -> dict[str, int] | None:
    """Tensors per storage type, most first ({"Q4_K": 193, "Q6_K": 33, "float32": 65}), for
    checkpoints holding block-quantized tensors or read from GGUF; else None."""
    if ckpt.format != "gguf" and not any(t.dtype.is_quantized for t in ckpt.tensors.values()):
        return None
    counts: dict[str, int] = {}
    for t in ckpt.tensors.values():
        counts[t.dtype.name] = counts.get(t.dtype.name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def render_inspect(ckpt: Checkpoint, label: str, fmt: str) -> str:
    data = inspect_dict(ckpt, label)
    if fmt == "json":
        return guard_json(json.dumps(data, indent=2, allow_nan=False) + "\n")
    lines = [
        printable(label),
        f"  format:     {data['format']}",
        f"  tensors:    {data['num_tensors']:,}",
        f"  parameters: {data['num_parameters']:,}",
        f"  size:       {data['size_bytes'] / 1e6:,.1f} MB",
        "  dtypes:     " + ", ".join(f"{k} ({v:,})" for k, v in data["dtypes"].items()),
    ]
    if "storage_types" in data:
        mix = list(data["storage_types"].items())
        lines.append(
            "  quantization: "
            + ", ".join(
                f"{k} {v} tensor{'s' if v != 1 else ''}" if i == 0 else f"{k} {v}"
                for i, (k, v) in enumerate(mix)
            )
        )
    if ckpt.metadata and ckpt.format in ("gguf", "onnx"):
        for key, value in sorted(ckpt.metadata.items()):
            lines.append(f"  {key}: {printable(value)}")
    parts = [printable(s.describe()) for s in ckpt.structure]
    if ckpt.choice is not None:
        for i, part in enumerate(parts):
            lines.append(("  structure:  " if i == 0 else " " * 14) + part)
    listed = {s.path for s in ckpt.structure}
    plain = [n for n in data["skipped"] if n not in listed]
    if plain:
        lines.append(
            f"  skipped:    {len(plain)} non-tensor entries: "
            + ", ".join(printable(n) for n in plain[:8])
            + (" ..." if len(plain) > 8 else "")
        )
    if ckpt.unchecked:
        shown = [f"{printable(n)} ({why})" for n, why in list(ckpt.unchecked.items())[:8]]
        more = " ..." if len(ckpt.unchecked) > 8 else ""
        lines.append(f"  unchecked:  {len(ckpt.unchecked)} tensors: {', '.join(shown)}{more}")
    if data["nonfinite_tensors"]:
        lines.append(f"  NaN/Inf in: {', '.join(map(printable, data['nonfinite_tensors']))}")
    lines.append("")
    for info in ckpt.tensor_info.values():
        shape = "x".join(str(s) for s in info.shape) or "scalar"
        extra = ""
        if info.nan_count or info.inf_count:
            extra = f"  nan={info.nan_count} inf={info.inf_count}"
        # Indented: a line never starts with a name from the file.
        lines.append(
            f"  {printable(info.name)}  {info.dtype} [{shape}]  mean={_num(info.mean)} "
            f"std={_num(info.std)} min={_num(info.min)} max={_num(info.max)}{extra}"
        )
    return guard_lines("\n".join(lines) + "\n")
