"""Storage views (issue 11, item 10): bfloat16/float8 tensors are read as their bits.

``TensorRef.storage()`` hands out uint16 (bfloat16) / uint8 (float8) views and the metrics
kernel, hashing, byte comparisons and the low-rank pass are told the logical dtype by name,
so `compare` and `textconv` never import ml_dtypes. These tests pin that the storage path
gives exactly what the array path gives (same bytes read, same numbers), in every reader
and on every backend, and that the commands really leave ml_dtypes alone.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import types
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from model_diff import chunked, lowrank, metrics, open_checkpoint
from model_diff.dtypes import BY_NAME, quantized, storage_to_float32
from model_diff.pipeline import compare
from model_diff.toy import save_safetensors
from tests.conftest import run_model_diff
from tests.model_diff.formats.factories import WRITERS, save_big_endian_pt

try:
    from model_diff import kernel as ckernel
except ImportError:  # the numpy step only
    ckernel = None  # type: ignore[assignment]

ML = {
    "bfloat16": ml_dtypes.bfloat16,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
}
ML_STORAGE = {"bfloat16": np.uint16, "float8_e4m3fn": np.uint8, "float8_e5m2": np.uint8}
_NO_KERNEL = pytest.mark.skipif(ckernel is None, reason="model_diff.kernel not built")
BACKENDS = [
    pytest.param("kernel", marks=_NO_KERNEL),
    pytest.param("portable", marks=_NO_KERNEL),
    "numpy",
]


def _values(name: str, n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """``n`` values of dtype ``name`` with zeros, NaN and Inf among them (float8_e4m3fn has
    no Inf: its largest finite value stands there)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    x[:: max(1, n // 7)] = 0.0
    x[3] = np.nan
    x[11] = np.inf if name != "float8_e4m3fn" else 448.0
    return x.astype(ML[name])


def _use_backend(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    # A fresh cache of the kernel's bound steps for this test: steps cached under another
    # backend would otherwise run instead of this one's (and this one's after the test).
    fresh = functools.lru_cache(maxsize=64)(metrics._kernel_steps.__wrapped__)
    monkeypatch.setattr(metrics, "_kernel_steps", fresh)
    if backend == "numpy":
        monkeypatch.setattr(metrics, "_KERNEL", None)
    elif backend == "portable":
        assert ckernel is not None
        shim = types.SimpleNamespace(
            pair_step=functools.partial(ckernel.pair_step, simd=False),
            side_step=functools.partial(ckernel.side_step, simd=False),
            side_step_if_equal=functools.partial(ckernel.side_step_if_equal, simd=False),
            bytes_equal=ckernel.bytes_equal,
        )
        monkeypatch.setattr(metrics, "_KERNEL", shim)
    else:
        monkeypatch.setattr(metrics, "_KERNEL", ckernel)


def test_storage_to_float32_is_exact_for_every_bit_pattern() -> None:
    """All 65,536 bfloat16 and 256 float8 patterns widen to what ml_dtypes gives, bit for
    bit (NaN signs included), into a new array or a caller's buffer."""
    for name, bits in (
        ("bfloat16", np.arange(1 << 16, dtype=np.uint16)),
        ("float8_e4m3fn", np.arange(256, dtype=np.uint8)),
        ("float8_e5m2", np.arange(256, dtype=np.uint8)),
    ):
        want = bits.view(ML[name]).astype(np.float32).view(np.uint32)
        assert np.array_equal(storage_to_float32(bits, name).view(np.uint32), want), name
        buf = np.empty(bits.size, np.float32)
        got = storage_to_float32(bits, name, buf)
        assert np.shares_memory(got, buf) and np.array_equal(got.view(np.uint32), want), name
    # anything that is not a storage view is cast as it is
    x = np.array([1.5, -2.0], dtype=np.float64)
    assert storage_to_float32(x, None).tolist() == [1.5, -2.0]
    assert storage_to_float32(np.array([7], np.uint16), "uint16").tolist() == [7.0]


def test_storage_dtypes() -> None:
    """uint16 for bfloat16, uint8 for float8, the numpy dtype for every other type; a
    block-quantized type's storage view is its decoded float32."""
    for name, d in BY_NAME.items():
        if name in ML:
            assert d.storage == np.dtype(np.uint16 if name == "bfloat16" else np.uint8)
            assert d.storage_differs and d.storage.itemsize == d.itemsize
        else:
            assert d.storage == d.numpy and not d.storage_differs
    q = quantized("Q8_0", 32, 34)
    assert q.storage == np.dtype(np.float32) and not q.storage_differs


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {
        "emb.weight": rng.standard_normal((24, 16)).astype(ml_dtypes.bfloat16),
        "f8a": rng.standard_normal(40).astype(ml_dtypes.float8_e4m3fn),
        "f8b": rng.standard_normal((5, 6)).astype(ml_dtypes.float8_e5m2),
        "norm": rng.standard_normal(16).astype(np.float32),
    }


def _write_strided_pt(d: Path, state: dict[str, np.ndarray]) -> Path:
    """Every 2-D tensor saved transposed (a strided view of its storage)."""
    import torch

    from tests.model_diff.formats.factories import to_torch

    tensors = {k: (v.t() if v.dim() == 2 else v) for k, v in to_torch(state).items()}
    torch.save(tensors, d / "strided.pt")
    return d / "strided.pt"


def _write_big_endian(d: Path, state: dict[str, np.ndarray]) -> Path:
    src = WRITERS["pt"](d, state)
    return save_big_endian_pt(src, d / "big.pt")


WRITE = {
    "safetensors": WRITERS["safetensors"],
    "pt": WRITERS["pt"],
    "legacy-pt": WRITERS["legacy-pt"],
    "hf-sharded": WRITERS["hf-sharded"],
    "hf-bin-sharded": WRITERS["hf-bin-sharded"],
    "big-endian-pt": _write_big_endian,
    "strided-pt": _write_strided_pt,
}
#: Readers whose storage views of these files are views of the mapped file.
ZERO_COPY = {"safetensors", "pt", "hf-sharded"}


@pytest.mark.parametrize("fmt", sorted(WRITE))
def test_every_reader_hands_out_storage_views_of_the_same_bytes(tmp_path: Path, fmt: str) -> None:
    """storage() is a flat C-contiguous array of DType.storage with the bytes array() has,
    zero-copy where array() is (both views of the one mapping)."""
    state = _state()
    with open_checkpoint(WRITE[fmt](tmp_path, state)) as ckpt:
        for name, ref in ckpt.tensors.items():
            s, a = ref.storage(), ref.array()
            assert isinstance(s, np.ndarray) and isinstance(a, np.ndarray)
            assert s.dtype == ref.dtype.storage and a.dtype == ref.dtype.numpy, name
            assert s.ndim == 1 and s.flags.c_contiguous and s.size == ref.numel
            assert s.tobytes() == a.tobytes(), name
            want = np.ascontiguousarray(state[name].T if "strided" in fmt else state[name])
            assert a.tobytes() == want.tobytes(), name
            if fmt in ZERO_COPY:
                assert np.shares_memory(s, a), name


def test_in_memory_arrays_of_ml_dtypes_give_storage_views_too() -> None:
    """from_arrays() tensors are real ml_dtypes arrays: storage() views them as bits."""
    from model_diff.checkpoint import from_arrays

    x = np.linspace(-1, 1, 9).astype(ml_dtypes.bfloat16)
    ref = from_arrays({"x": x})["x"]
    s = ref.storage()
    assert s.dtype == np.uint16 and np.shares_memory(s, x)
    assert ref.array().dtype == np.dtype(ml_dtypes.bfloat16)


def test_chunked_arrays_view_as_their_storage_dtype(tmp_path: Path) -> None:
    """A ChunkedArray (here: a transposed bfloat16 matrix) views between bfloat16 and its
    uint16 storage without touching the stored bytes."""
    m = np.arange(12, dtype=np.float32).reshape(3, 4).astype(ml_dtypes.bfloat16)
    c = chunked.transposed(m.view(np.uint16))
    v = c.view(np.dtype(ml_dtypes.bfloat16))
    assert v.dtype == np.dtype(ml_dtypes.bfloat16) and v.view(np.uint16).dtype == np.uint16
    assert np.array_equal(v.values(0, 12).astype(np.float32), m.T.reshape(-1).astype(np.float32))
    assert v.raw(2, 7).tobytes() == c.raw(2, 7).tobytes()
    with pytest.raises(ValueError, match="cannot view"):
        c.view(np.dtype(np.float32))


def test_a_bf16_gguf_with_permuted_rows_equals_its_source(tmp_path: Path) -> None:
    """GGUF BF16 Q/K rows come back in source order through a uint16 ChunkedArray: every
    tensor equals its bfloat16 safetensors source exactly."""
    from tests.model_diff.formats.ggufs import write_llama_gguf
    from tests.model_diff.formats.test_gguf import N_HEAD, N_KV
    from tests.model_diff.formats.test_gguf import _state as llama_state

    sd = {k: v.astype(ml_dtypes.bfloat16) if v.ndim == 2 else v for k, v in llama_state().items()}
    save_safetensors(tmp_path / "s.safetensors", sd)
    write_llama_gguf(tmp_path / "g.gguf", sd, n_head=N_HEAD, n_head_kv=N_KV, qtype="BF16")
    with (
        open_checkpoint(tmp_path / "s.safetensors") as a,
        open_checkpoint(tmp_path / "g.gguf") as b,
    ):
        assert "bfloat16" in {r.dtype.name for r in b.tensors.values()}
        c = compare(a, b)
    assert c.summary.unchanged_parameters == len(sd)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(ML))
def test_storage_and_array_paths_give_identical_metrics(
    monkeypatch: pytest.MonkeyPatch, backend: str, name: str
) -> None:
    """diff_arrays / array_stats / stats_if_equal on storage views with the dtype named give
    exactly the numbers they give on the ml_dtypes arrays: pairs, single sides, a pair mixed
    with float32, run in parts on threads (chunk and part sizes shrunk)."""
    _use_backend(monkeypatch, backend)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 1 << 10)
    monkeypatch.setattr(metrics, "PART_ELEMENTS", 1 << 12)
    n = 10_007  # three parts, a tail shorter than the vector width
    a, b = _values(name, n, 1), _values(name, n, 2)
    sa, sb = a.view(ML_STORAGE[name]), b.view(ML_STORAGE[name])
    by_array = metrics.diff_arrays(a, b, 1e-3, workers=3)
    by_storage = metrics.diff_arrays(sa, sb, 1e-3, dtypes=(name, name), workers=3)
    assert by_storage == by_array
    assert by_array.old.nan_count >= 1 and by_array.l2_diff  # the data is not trivial
    assert metrics.array_stats(sa, dtype=name, workers=3) == metrics.array_stats(a, workers=3)
    same = metrics.stats_if_equal(sa, sa.copy(), dtype=name, workers=3)
    assert same == metrics.array_stats(a, workers=3)
    assert metrics.stats_if_equal(sa, sb, dtype=name) is None
    f = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    mixed = metrics.diff_arrays(sa, f, 0.0, dtypes=(name, None))
    assert mixed == metrics.diff_arrays(a, f, 0.0)
    # Without the name the bits are read as integers: the name is what makes them bf16/fp8
    assert metrics.array_stats(sa) != metrics.array_stats(a)


@pytest.mark.parametrize("name", sorted(ML))
@pytest.mark.parametrize(
    "shape, chunk",
    [((200, 40), None), ((40, 200), None), ((300, 200), None), ((300, 200), 4096)],
    ids=["exact-tall", "exact-wide", "randomized", "randomized-chunked"],
)
def test_low_rank_on_storage_views_equals_the_array_path(
    monkeypatch: pytest.MonkeyPatch, name: str, shape: tuple[int, int], chunk: int | None
) -> None:
    """The low-rank pass widens storage chunks itself (reused buffers when the matrix spans
    several chunks): the summary is identical to the one from the ml_dtypes arrays."""
    if chunk is not None:
        monkeypatch.setattr(lowrank, "CHUNK_ELEMENTS", chunk)
    rng = np.random.default_rng(4)
    m, n = shape
    a32 = rng.standard_normal(shape).astype(np.float32)
    delta = np.outer(rng.standard_normal(m), rng.standard_normal(n)).astype(np.float32) / 4
    a = a32.astype(ML[name]).reshape(-1)
    b = (a32 + delta).astype(ML[name]).reshape(-1)
    st = ML_STORAGE[name]
    want = lowrank.analyze_delta(a, b, shape, force=True)
    got = lowrank.analyze_delta(a.view(st), b.view(st), shape, force=True, dtypes=(name, name))
    assert want is not None and want.get("rank_90") is not None
    assert got == want


def test_low_rank_storage_mixed_with_float32() -> None:
    """One side a storage view, the other float32: the same as with the ml_dtypes array."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((64, 80)).astype(ml_dtypes.bfloat16).reshape(-1)
    b = rng.standard_normal(64 * 80).astype(np.float32)
    want = lowrank.analyze_delta(a, b, (64, 80), force=True)
    got = lowrank.analyze_delta(
        a.view(np.uint16), b, (64, 80), force=True, dtypes=("bfloat16", None)
    )
    assert got == want


# -- the commands never import ml_dtypes ---------------------------------------------------


def _modules_after(args: list[str], env: dict[str, str]) -> tuple[bool, bool, str]:
    """(ml_dtypes imported, torch imported, stdout) of `python -m model_diff ARGS` run in
    one process (runpy), whatever its exit code."""
    # Reported from an exit handler: the entry point leaves with os._exit once its exit
    # handlers have run, so code after run_module never runs.
    probe = (
        "import atexit, runpy, sys\n"
        "def report():\n"
        "    flags = ['ml_dtypes' in sys.modules, 'torch' in sys.modules]\n"
        "    print('MODULES', flags, file=sys.stderr)\n"
        "atexit.register(report)\n"
        "sys.argv = ['model_diff', *sys.argv[1:]]\n"
        "runpy.run_module('model_diff', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, check=False
    )
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    ml, torch = ast.literal_eval(line[len("MODULES ") :])
    return ml, torch, proc.stdout


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    """A bfloat16/float8 pair with every kind of change: modified (low-rank analysed),
    unchanged, resized, dtype changed, added, NaN."""
    rng = np.random.default_rng(8)
    old = {
        "model.embed_tokens.weight": rng.standard_normal((40, 32)).astype(ml_dtypes.bfloat16),
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((64, 32)).astype(
            ml_dtypes.bfloat16
        ),
        "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((32, 32)).astype(
            ml_dtypes.bfloat16
        ),
        "model.layers.0.f8": rng.standard_normal(50).astype(ml_dtypes.float8_e4m3fn),
        "model.layers.0.f8b": rng.standard_normal(50).astype(ml_dtypes.float8_e5m2),
        "model.norm.weight": np.ones(32, dtype=ml_dtypes.bfloat16),
    }
    new = dict(old)
    up = old["model.layers.0.mlp.up_proj.weight"].astype(np.float32)
    up += np.outer(rng.standard_normal(64), rng.standard_normal(32)).astype(np.float32) / 10
    new["model.layers.0.mlp.up_proj.weight"] = up.astype(ml_dtypes.bfloat16)
    q = old["model.layers.0.self_attn.q_proj.weight"].astype(np.float32) * 1.01
    q[0, 0] = np.nan
    new["model.layers.0.self_attn.q_proj.weight"] = q.astype(ml_dtypes.bfloat16)
    emb = old["model.embed_tokens.weight"]
    new["model.embed_tokens.weight"] = np.concatenate([emb, emb[:4]])
    new["model.layers.0.f8"] = (old["model.layers.0.f8"].astype(np.float32) * 1.5).astype(
        ml_dtypes.float8_e4m3fn
    )
    new["model.layers.0.f8b"] = old["model.layers.0.f8b"].astype(ml_dtypes.bfloat16)
    old["lm_head.weight"] = emb.copy()  # tied to the embedding on both sides
    new["lm_head.weight"] = new["model.embed_tokens.weight"].copy()
    new["model.layers.0.extra.bias"] = np.ones(8, dtype=ml_dtypes.bfloat16)  # added
    save_safetensors(tmp_path / "old.safetensors", old)
    save_safetensors(tmp_path / "new.safetensors", new)
    return tmp_path / "old.safetensors", tmp_path / "new.safetensors"


def test_compare_and_textconv_of_a_bf16_pair_import_no_ml_dtypes(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """`compare` (every metric, low-rank on, tied weights confirmed, JSON out) and
    `textconv` of bfloat16/float8 safetensors files run without ml_dtypes (nor torch), and
    their output is what the array path gives (the in-process API, ml_dtypes loaded)."""
    env = dict(clean_env, MODEL_DIFF_NO_CACHE="1")
    old, new = _pair(tmp_path)
    ml, torch, out = _modules_after(
        ["compare", str(old), str(new), "--format", "json", "--low-rank", "on"], env
    )
    assert (ml, torch) == (False, False)
    report = json.loads(out)
    by_name = {d["name"]: d for group in report["tensors"].values() for d in group}
    up = by_name["model.layers.0.mlp.up_proj.weight"]
    assert up["change_type"] == "modified" and up["low_rank"]["rank_90"] == 1
    q = by_name["model.layers.0.self_attn.q_proj.weight"]
    assert (q["old_stats"]["nan_count"], q["new_stats"]["nan_count"]) == (0, 1)
    assert by_name["model.layers.0.f8"]["change_type"] == "modified"
    assert by_name["model.layers.0.f8b"]["change_type"] == "dtype_changed"
    assert by_name["model.embed_tokens.weight"]["change_type"] == "shape_changed"
    assert by_name["model.layers.0.extra.bias"]["change_type"] == "added"
    tied = report["analysis"]["tied_weights"]
    assert tied == [
        {"embedding": "model.embed_tokens.weight", "head": "lm_head.weight", "confirmed": True}
    ]

    # The array path (the ml_dtypes arrays) gives the same numbers.
    from model_diff.diff import DiffConfig

    with open_checkpoint(old) as a, open_checkpoint(new) as b:
        name = "model.layers.0.mlp.up_proj.weight"
        ref = metrics.diff_arrays(a[name].array(), b[name].array(), DiffConfig().change_threshold)
    assert (ref.l2_diff, ref.cosine_sim) == (up["l2_diff"], up["cosine_sim"])

    for path in (old, new):
        ml, torch, text = _modules_after(["textconv", str(path)], env)
        assert (ml, torch) == (False, False)
        assert " bfloat16 [64,32] xxh3:" in text and " float8_e4m3fn [50] " in text
    # and the numbers are the array path's
    tc = run_model_diff(["textconv", str(old)], env).stdout
    with open_checkpoint(old) as a:
        s = metrics.array_stats(a["model.layers.0.f8"].array())
    line = next(ln for ln in tc.splitlines() if ln.startswith("model.layers.0.f8 "))
    assert f"mean={s.mean:.6g} std={s.std:.6g}" in line
