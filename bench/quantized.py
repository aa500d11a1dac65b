"""Benchmark: peak RSS of comparing a >= 1 GB GGUF (Q8_0) with the safetensors it came from.

Builds, streaming (never a whole model in memory), a LLaMA-shaped model of random weights:
an F16 safetensors source and its GGUF written the way llama.cpp's converter writes it
(``gguf.GGUFWriter``, tensor names from ``gguf.get_tensor_name_map``, Q/K rows permuted for
RoPE, 2-D weights quantized to Q8_0 with ``gguf.quants``, norms F32). Then runs
``model-diff compare SOURCE GGUF --format json`` in a fresh process and reports its wall
time and peak RSS (``ru_maxrss`` of the child): every quantized tensor is dequantized in
chunks, the Q/K rows are gathered back, and the quantization report is built.

Run from the repository root (needs the ``gguf`` extra; ~3.6 GB of disk in --workdir):

    python bench/quantized.py [--blocks 20] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
D_MODEL, D_FF, VOCAB, N_HEAD = 2048, 5504, 32000, 16


def shapes(n_blocks: int) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, D_MODEL))]
    for i in range(n_blocks):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", (D_MODEL,)))
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out.append((p + f"self_attn.{proj}.weight", (D_MODEL, D_MODEL)))
        out.append((p + "post_attention_layernorm.weight", (D_MODEL,)))
        out.append((p + "mlp.gate_proj.weight", (D_FF, D_MODEL)))
        out.append((p + "mlp.up_proj.weight", (D_FF, D_MODEL)))
        out.append((p + "mlp.down_proj.weight", (D_MODEL, D_FF)))
    out.append(("model.norm.weight", (D_MODEL,)))
    out.append(("lm_head.weight", (VOCAB, D_MODEL)))
    return out


def weights(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    if len(shape) == 1:
        return np.ones(shape, dtype=np.float16)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def build(workdir: Path, n_blocks: int) -> tuple[Path, Path]:
    layout = shapes(n_blocks)
    src, dst = workdir / "source.safetensors", workdir / "model-Q8_0.gguf"
    header: dict[str, object] = {}
    offset = 0
    for name, shape in layout:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    arch = gguf.MODEL_ARCH.LLAMA
    name_map = gguf.get_tensor_name_map(arch, n_blocks)
    q8 = gguf.GGMLQuantizationType.Q8_0
    w = gguf.GGUFWriter(str(dst), gguf.MODEL_ARCH_NAMES[arch])
    w.add_block_count(n_blocks)
    w.add_embedding_length(D_MODEL)
    w.add_feed_forward_length(D_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_context_length(4096)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    gnames = []
    for name, shape in layout:
        g = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        assert g is not None, name
        gnames.append(g)
        if len(shape) == 1:
            w.add_tensor_info(g, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            qshape = gguf.quants.quant_shape_to_byte_shape(shape, q8)
            w.add_tensor_info(g, qshape, np.dtype(np.uint8), int(np.prod(qshape)), raw_dtype=q8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    with open(src, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for seed, (name, shape) in enumerate(layout):
            arr = weights(name, shape, seed)
            f.write(arr.tobytes())
            data = arr.astype(np.float32)
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                data = permute(data, N_HEAD)
            if data.ndim == 1:
                w.write_tensor_data(np.ascontiguousarray(data))
            else:
                w.write_tensor_data(gguf.quants.quantize(data, q8))
    w.close()
    return src, dst


def run_compare(old: Path, new: Path, out: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "model_diff", "compare", str(old), str(new)]
    cmd += ["--format", "json", "-o", str(out)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        sys.exit(f"compare failed:\n{err}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build(workdir, args.blocks)
        return
    try:
        # Build in a child: Linux keeps ru_maxrss across fork+exec, so a compare started from
        # a process that once held the model would report the builder's peak, not its own.
        t = time.perf_counter()
        cmd = [sys.executable, __file__, "--build-only", "--blocks", str(args.blocks)]
        subprocess.run([*cmd, "--workdir", str(workdir)], check=True)
        src, dst = workdir / "source.safetensors", workdir / "model-Q8_0.gguf"
        built = time.perf_counter() - t
        wall, rss = run_compare(src, dst, workdir / "report.json")
        report = json.loads((workdir / "report.json").read_text())
        q = report["analysis"]["quantization"]
        result = {
            "gguf_bytes": dst.stat().st_size,
            "source_bytes": src.stat().st_size,
            "tensors": report["summary"]["total_parameters"],
            "name_mapping": report["summary"]["name_mapping"]["description"],
            "q8_0_relative_error": q["types"]["Q8_0"]["aggregate_relative_error"],
            "build_seconds": round(built, 1),
            "compare_seconds": round(wall, 1),
            "peak_rss_mib": round(rss / 2**20, 1),
        }
        print(json.dumps(result, indent=2))
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        (ROOT / "bench" / "out" / "quantized.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
