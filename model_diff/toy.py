"""Small, realistic toy checkpoints: the ``model-diff demo`` data and the tests' fixtures.

``toy_transformer`` builds a LLaMA-style state dict (embeddings, attention, MLP, norms, LM
head) of numpy arrays; ``fine_tune`` derives a plausible next checkpoint from it with chosen
tensors frozen and later blocks moved more. ``save_safetensors`` writes the safetensors
format directly (every dtype model-diff reads, bfloat16 and float8 included).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from .dtypes import from_numpy


def toy_transformer(
    n_blocks: int = 4,
    d_model: int = 64,
    vocab: int = 256,
    d_ff: int | None = None,
    seed: int = 0,
    dtype: np.dtype | type = np.float32,
) -> dict[str, np.ndarray]:
    """A LLaMA-style decoder's weights with fixed random values (same seed, same bytes)."""
    rng = np.random.default_rng(seed)
    d_ff = d_ff or 4 * d_model
    std = 1.0 / np.sqrt(d_model)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(dtype)

    sd: dict[str, np.ndarray] = {"model.embed_tokens.weight": w(vocab, d_model)}
    for i in range(n_blocks):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = np.ones(d_model, dtype=dtype)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{proj}.weight"] = w(d_model, d_model)
        sd[p + "post_attention_layernorm.weight"] = np.ones(d_model, dtype=dtype)
        sd[p + "mlp.gate_proj.weight"] = w(d_ff, d_model)
        sd[p + "mlp.up_proj.weight"] = w(d_ff, d_model)
        sd[p + "mlp.down_proj.weight"] = w(d_model, d_ff)
    sd["model.norm.weight"] = np.ones(d_model, dtype=dtype)
    sd["lm_head.weight"] = w(vocab, d_model)
    return sd


def fine_tune(
    state: Mapping[str, np.ndarray],
    *,
    seed: int = 1,
    scale: float = 1e-2,
    frozen: Callable[[str], bool] | Iterable[str] = ("model.embed_tokens.weight",),
    depth_weight: Callable[[int, int], float] | None = None,
) -> dict[str, np.ndarray]:
    """A next checkpoint: every non-frozen float tensor moved by noise; later blocks more.

    ``frozen`` is a predicate on names or a collection of names kept bit-identical;
    ``depth_weight(block, n_blocks)`` scales the update per block (default 1 + 3*depth).
    """
    rng = np.random.default_rng(seed)
    is_frozen = frozen if callable(frozen) else set(frozen).__contains__
    blocks = {int(n.split(".")[2]) for n in state if n.startswith("model.layers.")}
    n_blocks = max(blocks) + 1 if blocks else 1
    weight = depth_weight or (lambda b, n: 1.0 + 3.0 * b / max(n - 1, 1))
    out: dict[str, np.ndarray] = {}
    for name, arr in state.items():
        if is_frozen(name) or arr.dtype.kind in "iub":  # integers and bools stay as they are
            out[name] = arr.copy()
            continue
        k = weight(int(name.split(".")[2]), n_blocks) if name.startswith("model.layers.") else 1.0
        noise = rng.standard_normal(arr.shape).astype(np.float32)
        base = np.abs(arr.astype(np.float32)).mean() + 1e-3
        out[name] = (arr.astype(np.float32) + noise * scale * k * base).astype(arr.dtype)
    return out


def _c_contiguous(arr: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray would turn a 0-d array into shape (1,): keep scalars scalar.
    a = np.asarray(arr)
    return a if a.flags.c_contiguous else a.copy(order="C")


def save_safetensors(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``arrays`` as a safetensors file (names sorted, data 8-byte aligned header)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    ordered = sorted(arrays)
    blobs = []
    for name in ordered:
        a = _c_contiguous(arrays[name])
        dt = from_numpy(a.dtype)
        raw = a.tobytes()
        header[name] = {
            "dtype": dt.st_code,
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        blobs.append(raw)
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for raw in blobs:
            f.write(raw)
