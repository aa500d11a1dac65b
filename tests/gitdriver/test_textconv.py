"""``model-diff textconv``: the line format, determinism, failure handling and startup cost."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xxhash

from model_diff.toy import save_safetensors, toy_transformer
from tests.conftest import run_model_diff

NAMES_NATURAL = ["layers.2.w", "layers.10.w"]


@pytest.fixture
def env(clean_env: dict[str, str]) -> dict[str, str]:
    return dict(clean_env, MODEL_DIFF_NO_CACHE="1")


def textconv(path: Path, env: dict[str, str], *extra: str, cwd: Path | None = None) -> str:
    proc = run_model_diff(["textconv", str(path), *extra], env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_one_line_per_tensor_with_hash_and_statistics(tmp_path: Path, env: dict[str, str]) -> None:
    """Header (format, counts, file hash) then one natural-ordered line per tensor whose hash is
    xxh3-128 of the tensor's bytes and whose statistics match numpy's."""
    a = np.array([[1.0, -2.0], [3.0, np.nan]], dtype=np.float32)
    b = np.arange(6, dtype=np.int64)
    path = tmp_path / "m.safetensors"
    save_safetensors(path, {"layers.10.w": b, "layers.2.w": a})
    lines = textconv(path, env).splitlines()
    assert lines[0] == "model-diff textconv v1 full"
    file_hash = xxhash.xxh3_128(path.read_bytes()).hexdigest()
    assert lines[1] == (
        f"checkpoint safetensors tensors=2 parameters=10 bytes=64 file=xxh3:{file_hash}"
    )
    finite = a[~np.isnan(a)].astype(np.float64)
    assert lines[2] == (
        f"layers.2.w float32 [2,2] xxh3:{xxhash.xxh3_128(a.tobytes()).hexdigest()} "
        f"mean={finite.mean():.6g} std={finite.std():.6g} min=-2 max=3 nan=1 inf=0"
    )
    assert lines[3].startswith(
        f"layers.10.w int64 [6] xxh3:{xxhash.xxh3_128(b.tobytes()).hexdigest()} mean=2.5 "
    )
    assert len(lines) == 4


def test_output_is_path_independent_and_fast_mode_keeps_hashes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Same bytes under another name and directory -> same output; --fast drops statistics
    only."""
    sd = toy_transformer(n_blocks=2, d_model=16, vocab=32)
    a = tmp_path / "a.safetensors"
    save_safetensors(a, sd)
    other = tmp_path / "deep" / "dir with space"
    other.mkdir(parents=True)
    b = other / "renamed é.safetensors"
    shutil.copy(a, b)
    full = textconv(a, env)
    assert full == textconv(b, env, cwd=other)
    fast = textconv(a, env, "--fast")
    assert fast.splitlines()[0] == "model-diff textconv v1 fast"
    for f_line, s_line in zip(fast.splitlines()[2:], full.splitlines()[2:], strict=True):
        assert s_line.startswith(f_line + " mean=")


def test_names_with_spaces_stay_one_field(tmp_path: Path, env: dict[str, str]) -> None:
    """A tensor name with a space is JSON-quoted so each line keeps space-separated fields."""
    path = tmp_path / "odd.safetensors"
    save_safetensors(path, {"a b": np.zeros(2, np.float32)})
    line = textconv(path, env).splitlines()[2]
    assert line.startswith('"a b" float32 [2] xxh3:')


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}     ", "m.safetensors"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:zz\n", "LFS pointer"),
    ],
)
def test_unreadable_input_is_one_error_line_and_exit_0(
    tmp_path: Path, env: dict[str, str], content: bytes, expected: str
) -> None:
    """Empty, corrupt and malformed-pointer files: exactly one `error:` line naming the file by
    its basename, exit 0, nothing on stderr."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(content)
    out = textconv(path, env)
    assert out.count("\n") == 1 and out.startswith("model-diff textconv: error: ")
    assert expected in out and str(tmp_path) not in out


def test_missing_file_and_bad_usage_still_exit_0(tmp_path: Path, env: dict[str, str]) -> None:
    """A path that does not exist, or no path at all: one error line, exit 0."""
    out = textconv(tmp_path / "nope.safetensors", env)
    assert out.startswith("model-diff textconv: error: ") and "nope.safetensors" in out
    proc = run_model_diff(["textconv"], env)
    assert proc.returncode == 0 and proc.stdout.startswith("model-diff textconv: error: usage")


def test_closed_pipe_ends_quietly_with_exit_0(tmp_path: Path, env: dict[str, str]) -> None:
    """The reader closing the pipe early (`... | head -1`): exit 0, no traceback."""
    path = tmp_path / "big.safetensors"
    save_safetensors(path, {f"t.{i}": np.full(4, i, np.float32) for i in range(3000)})
    with subprocess.Popen(
        [sys.executable, "-m", "model_diff", "textconv", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"model-diff textconv")
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    assert err == b""


HEAVY = ("click", "torch", "jinja2", "dulwich", "ml_dtypes")


def _imports_of(args: list[str], env: dict[str, str], cwd: Path | None = None) -> list[str]:
    """The heavy top-level modules loaded by `python -m model_diff ARGS` (run in-process by
    runpy, then ``sys.modules`` inspected), whatever its exit code."""
    # Reported from an exit handler: the entry point leaves with os._exit once its exit
    # handlers have run (no interpreter teardown), so code after run_module never runs.
    probe = (
        "import atexit, runpy, sys\n"
        "def report():\n"
        f"    heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "    print('HEAVY', heavy, file=sys.stderr)\n"
        "    print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n"
        "atexit.register(report)\n"
        "sys.argv = ['model_diff', *sys.argv[1:]]\n"
        "runpy.run_module('model_diff', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,  # whatever the command's exit code
    )
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY "))
    modules = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    _LOADED[tuple(args)] = set(modules.split()[1:])
    return list(ast.literal_eval(line[len("HEAVY ") :]))


#: Every module the last ``_imports_of`` run of each argument list had loaded.
_LOADED: dict[tuple[str, ...], set[str]] = {}


def test_startup_imports_neither_click_torch_jinja2_dulwich_nor_ml_dtypes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """`python -m model_diff textconv` on a small float32 safetensors file loads no heavy
    module, ml_dtypes included (its start-up time is measured by bench/engine.py, not
    asserted here: wall clocks are flaky)."""
    path = tmp_path / "small.safetensors"
    save_safetensors(path, toy_transformer(n_blocks=1, d_model=8, vocab=16))
    assert _imports_of(["textconv", str(path)], env) == []
    # nor another format's reading machinery (PyTorch's restricted unpickler)
    loaded = _LOADED[("textconv", str(path))]
    assert {"model_diff.formats.torch_read", "model_diff.formats.torch_pickle"} & loaded == set()
    assert _imports_of(["--version"], env) == []


def test_check_on_small_files_imports_only_click(tmp_path: Path, env: dict[str, str]) -> None:
    """`model-diff check OLD NEW` on two local safetensors files needs click (its command
    line) and none of torch, jinja2, dulwich or ml_dtypes."""
    old, new = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_safetensors(old, toy_transformer(n_blocks=1, d_model=8, vocab=16))
    save_safetensors(new, toy_transformer(n_blocks=1, d_model=8, vocab=16, seed=5))
    assert _imports_of(["check", str(old), str(new)], env) == ["click"]


def test_a_bf16_tensor_loads_ml_dtypes_only_when_viewed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Opening a bfloat16 file, describing it and reading its storage view (uint16) do not
    import ml_dtypes; viewing the tensor's data through numpy does. The textconv lists it."""
    import ml_dtypes

    path = tmp_path / "bf16.safetensors"
    save_safetensors(path, {"w": np.arange(4, dtype=np.float32).astype(ml_dtypes.bfloat16)})
    probe = (
        "import sys\n"
        "from model_diff.formats import open_checkpoint\n"
        "c = open_checkpoint(sys.argv[1]); c.describe()\n"
        "c['w'].storage()\n"
        "print('opened', 'ml_dtypes' in sys.modules)\n"
        "c['w'].array()\n"
        "print('viewed', 'ml_dtypes' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(path)], env=env, capture_output=True, text=True
    )
    assert proc.stdout.split("\n")[:2] == ["opened False", "viewed True"], proc.stderr
    assert " bfloat16 [4] " in textconv(path, env)


def _entry_points() -> dict[str, list[str]]:
    """How each entry point runs: `python -m model_diff` and the console script exactly as
    pyproject.toml declares it (what a wheel installs as `model-diff`)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    root = Path(__file__).resolve().parents[2]
    spec = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    module, attr = spec["model-diff"].split(":")
    script = f"import sys; sys.argv[0] = 'model-diff'; from {module} import {attr}; {attr}()"
    return {
        "python -m": [sys.executable, "-m", "model_diff"],
        "console script": [sys.executable, "-c", script],
    }


def _no_privilege_to_read() -> None:
    """In the child before exec: drop root's permission bypass (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set), so a mode-000 file is unreadable to it too."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("entry", ["python -m", "console script"])
def test_every_entry_point_exits_0_on_any_input(
    tmp_path: Path, env: dict[str, str], entry: str
) -> None:
    """Missing, unreadable, FIFO, directory, text `.bin`, socket, no or extra arguments:
    one `model-diff textconv: error:` line on stdout, nothing on stderr, exit 0, and
    within the timeout (a FIFO without a writer is never opened)."""
    import os
    import socket

    cmd = _entry_points()[entry]
    unreadable = tmp_path / "locked.safetensors"
    save_safetensors(unreadable, {"w": np.zeros(2, np.float32)})
    unreadable.chmod(0)
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    text_bin = tmp_path / "notes.bin"
    text_bin.write_text("just some text, not weights\n")
    sock_path = tmp_path / "s.pt"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    cases = {
        "missing": ([str(tmp_path / "nope.safetensors")], "nope.safetensors"),
        "unreadable": ([str(unreadable)], "permission denied"),
        "fifo": ([str(fifo)], "is a FIFO, not a regular file"),
        "socket": ([str(sock_path)], "is a socket, not a regular file"),
        "directory": ([str(tmp_path)], "is a directory"),
        "text .bin": ([str(text_bin)], "is not a checkpoint"),
        "no path": ([], "usage"),
        "extra arguments": ([str(text_bin), "extra", "--bogus"], "unexpected argument"),
        "unknown option only": (["--bogus=1"], "bogus"),
    }
    as_root = os.geteuid() == 0
    try:
        for case, (args, expected) in cases.items():
            proc = subprocess.run(
                [*cmd, "textconv", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                preexec_fn=_no_privilege_to_read if as_root and case == "unreadable" else None,
            )
            assert (proc.returncode, proc.stderr) == (0, ""), (case, proc)
            assert proc.stdout.startswith("model-diff textconv: error: "), (case, proc.stdout)
            assert proc.stdout.count("\n") == 1, (case, proc.stdout)
            assert expected in proc.stdout.lower() or expected in proc.stdout, (case, proc.stdout)
    finally:
        sock.close()


def test_a_text_bin_is_not_a_checkpoint_and_never_loads_torch(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A `.bin` whose content is neither a zip nor a pickle is reported as not a checkpoint
    (no `--unsafe-pickle` advice for a text file) without importing torch."""
    path = tmp_path / "vocab.bin"
    path.write_text("hello world\n")
    assert "torch" not in _imports_of(["textconv", str(path)], env)
    out = textconv(path, env)
    assert "is not a checkpoint" in out and "unsafe" not in out


def test_two_different_unreadable_files_give_different_lines(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """An error line ends with the file's content hash, so a changed non-checkpoint `.bin`
    still shows in `git diff` (identical textconv output would hide the file entirely)."""
    a, b = tmp_path / "a" / "blob.bin", tmp_path / "b" / "blob.bin"
    for p, data in ((a, b"not a checkpoint v1"), (b, b"not a checkpoint v2")):
        p.parent.mkdir()
        p.write_bytes(data)
    la, lb = textconv(a, env), textconv(b, env)
    assert la.startswith("model-diff textconv: error: blob.bin") and la != lb
    assert la.rstrip().endswith(
        f"[file=xxh3:{xxhash.xxh3_128(b'not a checkpoint v1').hexdigest()} bytes=19]"
    )
