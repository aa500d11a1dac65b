"""GGUF reader, GGUF <-> HF name mapping and the quantization report (issue 14, acceptance 1-2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff import chunked, open_checkpoint
from model_diff.cli import cli
from model_diff.diff import ChangeType
from model_diff.errors import CheckpointError
from model_diff.formats.gguf import unpermute_rows
from model_diff.pipeline import compare
from model_diff.quantization import TRAINING_CODES
from model_diff.toy import save_safetensors, toy_transformer
from tests.conftest import PROJECT_ROOT
from tests.model_diff.formats.ggufs import gguf, permute, write_llama_gguf

N_HEAD, N_KV = 4, 2  # grouped-query attention: K is permuted with the KV head count
N_TENSORS = 21  # toy_transformer(n_blocks=2)
#: Relative error of each type on Gaussian weights (measured: F16 ~2e-4, Q8_0 ~0.5%, Q4_0
#: ~8.6%), with a margin; outside these bands the values do not line up.
BANDS = {"F16": (5e-5, 1e-3), "Q8_0": (2e-3, 1e-2), "Q4_0": (5e-2, 1.5e-1)}


def _state(dtype: type = np.float32) -> dict[str, np.ndarray]:
    # d_model 64 with 4 heads of 16; K has 2 heads: k_proj is (32, 64).
    sd = toy_transformer(n_blocks=2, d_model=64, vocab=96, seed=3, dtype=dtype)
    rng = np.random.default_rng(5)
    for i in range(2):
        sd[f"model.layers.{i}.self_attn.k_proj.weight"] = (
            rng.standard_normal((32, 64)) / 8
        ).astype(dtype)
        sd[f"model.layers.{i}.self_attn.v_proj.weight"] = (
            rng.standard_normal((32, 64)) / 8
        ).astype(dtype)
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gguf")
    sd = _state()
    save_safetensors(d / "src.safetensors", sd)
    out = {"src": d / "src.safetensors"}
    for q in ("F16", "Q8_0", "Q4_0"):
        out[q] = write_llama_gguf(d / f"m-{q}.gguf", sd, n_head=N_HEAD, n_head_kv=N_KV, qtype=q)
    return out


def test_unpermute_rows_inverts_llama_cpp_permute() -> None:
    """The row order undoes convert_hf_to_gguf's permute for Q (n_head) and K (n_kv)."""
    w = np.arange(32 * 3).reshape(32, 3)
    for heads in (1, 2, 4, 8):
        assert np.array_equal(permute(w, heads, heads)[unpermute_rows(32, heads)], w)
    with pytest.raises(ValueError, match="heads"):
        unpermute_rows(30, 4)


def test_header_metadata_shapes_and_quant_types(files: dict[str, Path]) -> None:
    """Metadata, torch-order shapes, the quant type as dtype and its storage size."""
    with open_checkpoint(files["Q4_0"]) as c:
        assert c.format == "gguf"
        md = c.metadata
        assert md["general.architecture"] == "llama"
        assert md["llama.block_count"] == "2"
        assert md["general.file_type"] == "MOSTLY_Q4_0"
        assert md["general.quantization_version"] == str(gguf.GGML_QUANT_VERSION)
        q = c["blk.0.attn_k.weight"]
        assert (q.dtype.name, q.shape) == ("Q4_0", (32, 64))  # GGUF stores [64, 32]
        assert q.nbytes == 32 * 64 // 32 * 18
        assert c["blk.0.attn_norm.weight"].dtype.name == "float32"
        assert c["token_embd.weight"].shape == (96, 64)
        # Each tensor's data offset in the file: the order a pass reads tensors in.
        stored = {t.name: int(t.data_offset) for t in gguf.GGUFReader(files["Q4_0"]).tensors}
        assert c["token_embd.weight"].offset == stored["token_embd.weight"]
        assert all(isinstance(ref.offset, int) for ref in c.tensors.values())


def test_dequantized_values_match_gguf_and_stream_in_any_range(files: dict[str, Path]) -> None:
    """Chunks decode to gguf.quants.dequantize of the whole tensor, whatever the range."""
    reader = gguf.GGUFReader(files["Q4_0"])
    raw = next(t for t in reader.tensors if t.name == "blk.1.ffn_up.weight")
    expected = gguf.quants.dequantize(np.asarray(raw.data), raw.tensor_type).reshape(-1)
    with open_checkpoint(files["Q4_0"]) as c:
        arr = c["blk.1.ffn_up.weight"].array()
        assert isinstance(arr, chunked.ChunkedArray)
        assert np.array_equal(arr.dense(), expected)
        for lo, hi in ((0, 1), (5, 77), (31, 33), (1000, 16384)):
            assert np.array_equal(arr.values(lo, hi), expected[lo:hi])
        assert arr.raw(0, 64).tobytes() == np.asarray(raw.data).reshape(-1)[:36].tobytes()


def test_f16_gguf_pairs_every_tensor_with_its_source(files: dict[str, Path]) -> None:
    """Acceptance 1 (F16): all pairs, 0 added/removed, F16 rounding, mapping stated."""
    with open_checkpoint(files["src"]) as src, open_checkpoint(files["F16"]) as g:
        c = compare(src, g)
    s = c.summary
    assert (s.total_parameters, s.added_parameters, s.removed_parameters) == (N_TENSORS, 0, 0)
    assert s.name_mapping is not None
    assert s.name_mapping["description"].startswith(
        f"names mapped from GGUF llama, {N_TENSORS} of {N_TENSORS}"
    )
    assert len(s.name_mapping["transforms"]["RoPE permutation"]) == 4  # q and k of 2 blocks
    for d in c.diffs:
        if d.old_shape and len(d.old_shape) == 2:
            assert d.change_type is ChangeType.DTYPE_CHANGED
            lo, hi = BANDS["F16"]
            assert d.relative_change is not None and lo < d.relative_change < hi, d.name
        else:  # 1-D norms stay F32, as the converter writes them
            assert d.change_type is ChangeType.UNCHANGED, d.name


def test_f16_source_and_f16_gguf_are_identical_after_unpermuting(tmp_path: Path) -> None:
    """Bitwise: with the permutation undone, every F16 tensor equals its source exactly."""
    sd = {k: v.astype(np.float16) if v.ndim == 2 else v for k, v in _state().items()}
    save_safetensors(tmp_path / "s.safetensors", sd)
    write_llama_gguf(tmp_path / "g.gguf", sd, n_head=N_HEAD, n_head_kv=N_KV, qtype="F16")
    with (
        open_checkpoint(tmp_path / "s.safetensors") as a,
        open_checkpoint(tmp_path / "g.gguf") as b,
    ):
        c = compare(a, b)
    assert c.summary.unchanged_parameters == N_TENSORS
    assert c.analysis.codes == ["no-change"]


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantized_gguf_against_source_is_judged_as_quantization(
    files: dict[str, Path], qtype: str
) -> None:
    """Acceptance 1 (Q8_0, Q4_0): dtype_changed, errors in band, no training alarm."""
    with open_checkpoint(files["src"]) as src, open_checkpoint(files[qtype]) as g:
        c = compare(src, g)
        text = c.report("text", old_name="src", new_name=qtype)
        md = c.report("markdown", old_name="src", new_name=qtype)
        html = c.report("html", old_name="src", new_name=qtype)
        doc = json.loads(c.report("json", old_name="src", new_name=qtype))
    s = c.summary
    assert (s.added_parameters, s.removed_parameters) == (0, 0)
    lo, hi = BANDS[qtype]
    for d in c.diffs:
        if d.old_shape and len(d.old_shape) == 2:
            assert d.change_type is ChangeType.DTYPE_CHANGED and d.new_dtype == qtype
            assert d.relative_change is not None and lo < d.relative_change < hi, d.name
            assert d.cosine_sim is not None and d.cosine_sim > 1 - hi
    codes = set(c.analysis.codes)
    assert "quantization-error" in codes
    assert not codes & TRAINING_CODES
    q = c.analysis.quantization
    assert q["quantized_side"] == "new"
    assert lo < q["types"][qtype]["aggregate_relative_error"] < hi
    assert q["types"]["float32"]["exact"] == 5
    assert set(q["layer_types"]) == {"embedding", "attention", "mlp", "norm", "head"}
    worst = q["worst"]
    assert len(worst) == 10
    assert worst[0]["relative_error"] == max(
        d.relative_change for d in c.diffs if d.relative_change is not None
    )
    assert c.analysis.change_pattern == "not_analyzed" and c.analysis.frozen == ()
    for report in (text, md, html):
        assert "names mapped from GGUF llama, 21 of 21" in report
        assert worst[0]["name"] in report
    assert "Quantization (new side vs old)" in text
    assert doc["summary"]["name_mapping"]["mapped"] == N_TENSORS
    assert doc["analysis"]["quantization"]["worst"][0]["name"] == worst[0]["name"]


def test_source_on_the_new_side_measures_error_against_the_source(files: dict[str, Path]) -> None:
    """GGUF as old side: the relative error is still ||q - src|| / ||src||."""
    with open_checkpoint(files["Q4_0"]) as g, open_checkpoint(files["src"]) as src:
        rev = compare(g, src).analysis.quantization
    with open_checkpoint(files["src"]) as src, open_checkpoint(files["Q4_0"]) as g:
        fwd = compare(src, g).analysis.quantization
    assert rev["quantized_side"] == "old"
    for name, rec in fwd["tensors"].items():
        assert rev["tensors"][name]["relative_error"] == pytest.approx(rec["relative_error"])


def test_two_quantizations_pair_by_name_and_a_gguf_equals_itself(files: dict[str, Path]) -> None:
    """Acceptance 2: Q8_0 vs Q4_0 pair by GGUF name; a GGUF vs itself is unchanged by bytes."""
    with open_checkpoint(files["Q8_0"]) as a, open_checkpoint(files["Q4_0"]) as b:
        c = compare(a, b)
    assert c.summary.name_mapping is None
    assert (c.summary.added_parameters, c.summary.removed_parameters) == (0, 0)
    assert c.summary.dtype_changed_parameters == 16
    assert all(d.name.startswith(("blk.", "token_embd", "output")) for d in c.diffs)
    assert c.analysis.quantization["quantized_side"] == "new"  # 4.5 bits vs 8.5
    for d in c.diffs:
        if d.change_type is ChangeType.DTYPE_CHANGED:
            assert d.relative_change is not None and 0.05 < d.relative_change < 0.15
    with open_checkpoint(files["Q4_0"]) as a, open_checkpoint(files["Q4_0"]) as b:
        same = compare(a, b)
    assert same.summary.unchanged_parameters == N_TENSORS


def test_one_changed_block_makes_exactly_one_tensor_modified(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """Same-type quantized tensors compare stored blocks: one flipped byte -> one modified."""
    with open_checkpoint(files["Q8_0"]) as c:
        ref = c["blk.1.ffn_down.weight"]
    reader = gguf.GGUFReader(files["Q8_0"])
    offset = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight").data_offset
    del reader
    data = bytearray(files["Q8_0"].read_bytes())
    data[offset + 40] ^= 0x01  # a quant byte of the second block
    (tmp_path / "b.gguf").write_bytes(bytes(data))
    with open_checkpoint(files["Q8_0"]) as a, open_checkpoint(tmp_path / "b.gguf") as b:
        c = compare(a, b)
    changed = [d for d in c.diffs if d.is_changed]
    assert [(d.name, d.change_type) for d in changed] == [(ref.name, ChangeType.MODIFIED)]
    assert changed[0].change_ratio == pytest.approx(1 / ref.numel)


def test_inspect_shows_the_quantization_mix(files: dict[str, Path]) -> None:
    """inspect: "quantization: Q4_0 16 tensors, float32 5" and the header facts."""
    result = CliRunner().invoke(cli, ["inspect", str(files["Q4_0"])])
    assert result.exit_code == 0, result.output
    assert "quantization: Q4_0 16 tensors, float32 5" in result.output
    assert "general.file_type: MOSTLY_Q4_0" in result.output
    result = CliRunner().invoke(cli, ["inspect", str(files["Q4_0"]), "--format", "json"])
    assert json.loads(result.output)["storage_types"] == {"Q4_0": 16, "float32": 5}


def test_truncated_gguf_is_a_checkpoint_error(files: dict[str, Path], tmp_path: Path) -> None:
    """A cut file names itself and the fix; nothing is made up."""
    data = files["Q8_0"].read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"cut\.gguf.*(truncated|not a readable GGUF)"):
        open_checkpoint(tmp_path / "cut.gguf")
    (tmp_path / "head.gguf").write_bytes(data[:40])
    with pytest.raises(CheckpointError, match="not a readable GGUF"):
        open_checkpoint(tmp_path / "head.gguf")


def test_unmapped_names_are_listed_not_dropped(tmp_path: Path) -> None:
    """A source tensor the GGUF lacks is removed; the GGUF's extra one is listed unmapped."""
    sd = _state()
    write_llama_gguf(
        tmp_path / "g.gguf", sd, n_head=N_HEAD, n_head_kv=N_KV, skip=("lm_head.weight",)
    )
    sd["model.extra.weight"] = np.ones((4, 4), dtype=np.float32)
    del sd["model.norm.weight"]
    save_safetensors(tmp_path / "s.safetensors", sd)
    with (
        open_checkpoint(tmp_path / "s.safetensors") as a,
        open_checkpoint(tmp_path / "g.gguf") as b,
    ):
        c = compare(a, b)
    m = c.summary.name_mapping
    assert m is not None and m["unmapped"] == ["output_norm.weight"]
    assert m["mapped"] == N_TENSORS - 2
    removed = {d.name for d in c.diffs if d.change_type is ChangeType.REMOVED}
    added = {d.name for d in c.diffs if d.change_type is ChangeType.ADDED}
    assert removed == {"lm_head.weight", "model.extra.weight"}
    assert added == {"output_norm.weight"}


def _without_gguf(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; sys.modules['gguf'] = None; "
        "from model_diff.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_without_the_extra_a_gguf_gets_one_line_naming_it(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """No gguf package: compare/inspect exit 2 with one line; textconv still exits 0."""
    r = _without_gguf(["inspect", str(files["Q4_0"])], tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and 'pip install "model-diff[gguf]"' in lines[0], r.stderr
    r = _without_gguf(["textconv", str(files["Q4_0"])], tmp_path)
    assert r.returncode == 0
    assert "model-diff[gguf]" in r.stdout and r.stdout.count("\n") == 1
