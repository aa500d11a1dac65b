"""Test fixtures: GGUF files written with ``gguf.GGUFWriter`` the way llama.cpp's
convert_hf_to_gguf.py writes a LLaMA model (names from ``gguf.get_tensor_name_map``, Q/K rows
permuted for RoPE, 2-D weights in the output type and 1-D tensors in F32, quantized with
``gguf.quants``), and ONNX models exported by torch or built with ``onnx.helper``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

gguf = __import__("pytest").importorskip("gguf")


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py), on numpy."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_llama_gguf(
    path: Path,
    state: Mapping[str, np.ndarray],
    *,
    n_head: int,
    n_head_kv: int | None = None,
    qtype: str = "F16",
    skip: tuple[str, ...] = (),
) -> Path:
    """Convert a LLaMA-style HF state dict to GGUF as llama.cpp's converter does."""
    n_blocks = 1 + max(int(n.split(".")[2]) for n in state if n.startswith("model.layers."))
    arch = gguf.MODEL_ARCH.LLAMA
    name_map = gguf.get_tensor_name_map(arch, n_blocks)
    q = gguf.GGMLQuantizationType[qtype]
    ftype = {
        "F32": gguf.LlamaFileType.ALL_F32,
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "BF16": gguf.LlamaFileType.MOSTLY_BF16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[qtype]
    d_model = state["model.embed_tokens.weight"].shape[1]
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    w.add_block_count(n_blocks)
    w.add_context_length(128)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(state["model.layers.0.mlp.up_proj.weight"].shape[0])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv or n_head)
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, arr in state.items():
        if name in skip:
            continue
        data = np.asarray(arr, dtype=np.float32)
        if name.endswith("q_proj.weight"):
            data = permute(data, n_head, n_head)
        elif name.endswith("k_proj.weight"):
            data = permute(data, n_head, n_head_kv)
        new_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new_name is not None, name
        if data.ndim <= 1 or q == gguf.GGMLQuantizationType.F32:
            w.add_tensor(new_name, np.ascontiguousarray(data, dtype=np.float32))
        elif q == gguf.GGMLQuantizationType.F16:
            w.add_tensor(new_name, np.ascontiguousarray(data, dtype=np.float16))
        else:
            w.add_tensor(new_name, gguf.quants.quantize(data, q), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
