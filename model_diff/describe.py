"""``model-diff inspect``: one checkpoint described as text or strict JSON.

Pure rendering over a ``Checkpoint``; the CLI does the I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

from . import __version__
from .checkpoint import Checkpoint


def inspect_dict(ckpt: Checkpoint, label: str) -> dict[str, Any]:
    """Everything ``inspect`` shows, JSON-safe (non-finite floats become None)."""
    infos = ckpt.tensor_info
    return {
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


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def render_inspect(ckpt: Checkpoint, label: str, fmt: str) -> str:
    data = inspect_dict(ckpt, label)
    if fmt == "json":
        return json.dumps(data, indent=2, allow_nan=False) + "\n"
    lines = [
        f"{label}",
        f"  format:     {data['format']}",
        f"  tensors:    {data['num_tensors']:,}",
        f"  parameters: {data['num_parameters']:,}",
        f"  size:       {data['size_bytes'] / 1e6:,.1f} MB",
        "  dtypes:     " + ", ".join(f"{k} ({v:,})" for k, v in data["dtypes"].items()),
    ]
    parts = [s.describe() for s in ckpt.structure]
    if ckpt.choice is not None:
        for i, part in enumerate(parts):
            lines.append(("  structure:  " if i == 0 else " " * 14) + part)
    listed = {s.path for s in ckpt.structure}
    plain = [n for n in data["skipped"] if n not in listed]
    if plain:
        lines.append(
            f"  skipped:    {len(plain)} non-tensor entries: "
            + ", ".join(plain[:8])
            + (" ..." if len(plain) > 8 else "")
        )
    if ckpt.unchecked:
        shown = [f"{n} ({why})" for n, why in list(ckpt.unchecked.items())[:8]]
        more = " ..." if len(ckpt.unchecked) > 8 else ""
        lines.append(f"  unchecked:  {len(ckpt.unchecked)} tensors: {', '.join(shown)}{more}")
    if data["nonfinite_tensors"]:
        lines.append(f"  NaN/Inf in: {', '.join(data['nonfinite_tensors'])}")
    lines.append("")
    for info in ckpt.tensor_info.values():
        shape = "x".join(str(s) for s in info.shape) or "scalar"
        extra = ""
        if info.nan_count or info.inf_count:
            extra = f"  nan={info.nan_count} inf={info.inf_count}"
        lines.append(
            f"{info.name}  {info.dtype} [{shape}]  mean={_num(info.mean)} "
            f"std={_num(info.std)} min={_num(info.min)} max={_num(info.max)}{extra}"
        )
    return "\n".join(lines) + "\n"
