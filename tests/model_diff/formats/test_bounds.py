"""Hostile input stays bounded: compressed .npz bombs, lying headers, deep or huge JSON."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model_diff.errors import CheckpointError
from model_diff.formats import base, open_checkpoint
from model_diff.formats import numpy as npreader
from model_diff.toy import save_safetensors
from tests.conftest import run_model_diff


def npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def write_zero_bomb(path: Path, nbytes: int, *, level: int = 9) -> Path:
    """An .npz whose one float32 member of zeros inflates to ``nbytes`` (streamed out: the
    writer itself never holds it)."""
    n = nbytes // 4
    zero = bytes(1 << 20)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf,
        zf.open("w.npy", "w", force_zip64=True) as f,
    ):
        f.write(npy_header("<f4", (n,)))
        left = n * 4
        while left:
            k = min(left, len(zero))
            f.write(zero[:k])
            left -= k
    return path


_PEAK = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM'):\n"
    "            sys.stderr.write('PEAK ' + line.split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "sys.argv = ['model_diff', *sys.argv[1:]]\n"
    "runpy.run_module('model_diff', run_name='__main__')\n"
)


def peak_rss_kib(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    r = subprocess.run(
        [sys.executable, "-c", _PEAK, *args], capture_output=True, text=True, env=env, check=False
    )
    peak = [ln for ln in r.stderr.splitlines() if ln.startswith("PEAK ")]
    assert peak, r.stderr
    return int(peak[-1].split()[1]), r.stdout


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_compressed_npz_bomb_keeps_health_and_textconv_bounded(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A ~0.1 MB .npz inflating to 128 MiB: health and textconv read it in bounded chunks
    (peak RSS well under the inflated size plus the ~80 MiB a bare process takes here;
    bench/bounds.py runs the 2 MB -> 2 GB case)."""
    bomb = write_zero_bomb(tmp_path / "bomb.npz", 128 << 20)
    assert bomb.stat().st_size < 1 << 20
    rss, out = peak_rss_kib(["health", str(bomb)], clean_env)
    assert "0 unreadable" in out and "ok" in out
    assert rss < 140 << 10, f"health peak RSS {rss} KiB"
    rss, out = peak_rss_kib(["textconv", str(bomb)], clean_env)
    assert "w float32 [33554432] xxh3:" in out and "max=0 nan=0" in out
    assert rss < 140 << 10, f"textconv peak RSS {rss} KiB"


def test_spooled_member_reads_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressed member above SPOOL_BYTES (spooled to a temporary file) reads the same
    values as numpy, in C order, Fortran-ordered and big-endian ones included."""
    monkeypatch.setattr(npreader, "SPOOL_BYTES", 1024)
    rng = np.random.default_rng(0)
    state = {
        "a": rng.standard_normal(5000).astype(np.float32),
        "f": np.asfortranarray(rng.standard_normal((40, 30))),
        "be": np.arange(3000, dtype=">i4"),
        "small": np.arange(3, dtype=np.int16),
    }
    np.savez_compressed(tmp_path / "c.npz", **state)
    with open_checkpoint(tmp_path / "c.npz") as ckpt:
        for name, want in state.items():
            got = ckpt[name].array()
            assert got.tolist() == want.reshape(-1, order="C").tolist(), name
            ckpt[name].release()
            assert ckpt[name].array().tolist() == want.reshape(-1).tolist(), name


def test_npz_claiming_a_trillion_elements_exits_2(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A ~200-byte .npz whose header claims 10^12 float32 (stored or deflated): a one-line
    error naming the claim before anything is allocated; health exits 2."""
    for mode in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = tmp_path / f"liar{mode}.npz"
        with zipfile.ZipFile(path, "w", mode) as zf:
            zf.writestr("w.npy", npy_header("<f4", (10**12,)) + bytes(8))
        assert path.stat().st_size < 400
        with pytest.raises(CheckpointError, match=r"claims float32 \[1000000000000\]"):
            open_checkpoint(path)
    r = run_model_diff(["health", str(path)], clean_env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "claims float32 [1000000000000]" in r.stdout and "Traceback" not in r.stderr


def test_member_shorter_or_longer_than_its_header_is_refused(tmp_path: Path) -> None:
    """Header shape against member size: a member with more bytes than its shape says is as
    refused as one with fewer."""
    for extra in (-8, 8):
        path = tmp_path / f"m{extra}.npz"
        data = npy_header("<f8", (10,)) + bytes(80 + extra)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("w.npy", data)
        with pytest.raises(CheckpointError, match=r"claims float64 \[10\] = 80 bytes"):
            open_checkpoint(path)


def test_complex_member_is_listed_as_unchecked(tmp_path: Path) -> None:
    """An .npz member of a dtype model-diff does not read is named in ``unchecked``; the
    other members still read."""
    np.savez(tmp_path / "m.npz", w=np.ones(3, np.float32), c=np.zeros(2, np.complex64))
    with open_checkpoint(tmp_path / "m.npz") as ckpt:
        assert ckpt.layer_names == ["w"]
        assert ckpt.unchecked == {"c": "dtype complex64 is not read by model-diff"}


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def test_deep_json_everywhere_exits_2_in_one_line(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A safetensors header, a config.json and an index nested 100,000 deep: a one-line
    CheckpointError, and through the CLI exit 2 without a RecursionError traceback."""
    st = tmp_path / "deep.safetensors"
    header = ('{"__metadata__": ' + _deep(100_000) + "}").encode()
    st.write_bytes(len(header).to_bytes(8, "little") + header)
    cfg = tmp_path / "cfg_dir"
    cfg.mkdir()
    save_safetensors(cfg / "model.safetensors", {"w": np.ones(2, np.float32)})
    (cfg / "config.json").write_text('{"a": ' + _deep(100_000) + "}")
    idx = tmp_path / "idx_dir"
    idx.mkdir()
    (idx / "model.safetensors.index.json").write_text('{"weight_map": ' + _deep(100_000) + "}")
    for target in (st, cfg, idx):
        with pytest.raises(CheckpointError, match="nests JSON too deeply") as info:
            open_checkpoint(target)
        assert "\n" not in str(info.value) and str(target) in str(info.value)
    r = run_model_diff(["inspect", str(st)], clean_env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "nests JSON too deeply" in r.stderr and "Traceback" not in r.stderr


def test_huge_json_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config.json over the JSON size limit is a one-line error (the limit lowered here to
    keep the test small)."""
    monkeypatch.setattr(base, "MAX_JSON_BYTES", 1000)
    save_safetensors(tmp_path / "model.safetensors", {"w": np.ones(2, np.float32)})
    (tmp_path / "config.json").write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(CheckpointError, match=r"config\.json is over the 1,000-byte limit"):
        open_checkpoint(tmp_path)
