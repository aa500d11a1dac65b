"""The core CLI: compare, inspect and demo, their exit codes, errors and determinism."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff.cli import all_commands, cli
from model_diff.toy import fine_tune, save_safetensors, toy_transformer
from tests.conftest import run_model_diff


def _strict_json(text: str) -> object:
    def refuse(const: str) -> None:
        raise ValueError(f"non-strict JSON constant {const}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    base = toy_transformer(n_blocks=3, d_model=16, vocab=64, seed=0)
    tuned = fine_tune(base, seed=1)
    tuned["model.layers.1.mlp.up_proj.weight"][0, 0] = np.nan
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_safetensors(a, base)
    save_safetensors(b, tuned)
    return a, b


def test_compare_text_shows_insights_and_pattern(pair: tuple[Path, Path]) -> None:
    """compare prints the report to stdout and exits 0; nothing on stderr off a TTY."""
    result = CliRunner().invoke(cli, ["compare", str(pair[0]), str(pair[1])])
    assert result.exit_code == 0, result.output
    assert "model.layers.1.mlp.up_proj.weight" in result.stdout
    assert "nonfinite" in result.stdout.lower() or "nan" in result.stdout.lower()
    assert result.stderr == ""


def test_compare_json_is_strict_and_counts_the_nan(pair: tuple[Path, Path]) -> None:
    """The JSON report parses strictly (no bare NaN) and carries the NaN count."""
    result = CliRunner().invoke(cli, ["compare", str(pair[0]), str(pair[1]), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = _strict_json(result.stdout)
    assert isinstance(data, dict)
    text = json.dumps(data)
    assert "model.layers.1.mlp.up_proj.weight" in text and '"nan_count": 1' in text


@pytest.mark.parametrize("fmt", ["json", "markdown", "html", "text"])
def test_compare_is_byte_identical_across_hash_seeds(
    pair: tuple[Path, Path], clean_env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """The same inputs give byte-identical reports whatever PYTHONHASHSEED is."""
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"r{seed}.{fmt}"
        env = dict(clean_env, PYTHONHASHSEED=seed)
        r = run_model_diff(
            ["compare", str(pair[0]), str(pair[1]), "--format", fmt, "-o", str(out)], env
        )
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_inspect_json_is_strict(pair: tuple[Path, Path]) -> None:
    """inspect --format json describes every tensor with null for undefined numbers."""
    result = CliRunner().invoke(cli, ["inspect", str(pair[1]), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = _strict_json(result.stdout)
    assert isinstance(data, dict)
    assert data["num_tensors"] == len(data["tensor_info"])
    assert data["nonfinite_tensors"] == ["model.layers.1.mlp.up_proj.weight"]


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.safetensors"
    save_safetensors(good, {"w": np.ones(16, np.float32)})
    raw = good.read_bytes()
    files = {
        "truncated": raw[: len(raw) - 7],
        "empty": b"",
        "corrupt": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
        "unknown": b"PK?? this is not any checkpoint format\n" * 4,
        "lfs-pointer": (
            b"version https://git-lfs.github.com/spec/v1\n"
            b"oid sha256:" + b"ab" * 32 + b"\nsize 12345\n"
        ),
    }
    out = {}
    for name, data in files.items():
        ext = ".bin" if name == "unknown" else ".safetensors"
        p = tmp_path / f"{name}{ext}"
        p.write_bytes(data)
        out[name] = p
    out["missing"] = tmp_path / "does-not-exist.safetensors"
    return out


@pytest.mark.parametrize(
    "kind", ["truncated", "empty", "corrupt", "unknown", "lfs-pointer", "missing"]
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, clean_env: dict[str, str], kind: str
) -> None:
    """Bad inputs exit 2 with one line naming the file and a hint; no report is written."""
    bad = _bad_inputs(tmp_path)[kind]
    out = tmp_path / "report.json"
    r = run_model_diff(
        [
            "compare",
            str(bad),
            str(tmp_path / "good.safetensors"),
            "--format",
            "json",
            "-o",
            str(out),
        ],
        clean_env,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0] and "hint:" in lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model-diff-")] == []


def test_unsafe_pickle_without_torch_exits_2_naming_the_extra(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A .pt reads where torch is not importable; only --unsafe-pickle asks for
    model-diff[torch] (exit 2, one line)."""
    torch = pytest.importorskip("torch")
    pt = tmp_path / "m.pt"
    torch.save({"w": torch.ones(3)}, pt)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # A real missing module: sys.modules entry None makes `import torch` raise ImportError.
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = dict(clean_env, PYTHONPATH=os.pathsep.join([str(blocker), clean_env["PYTHONPATH"]]))
    r = run_model_diff(["inspect", str(pt)], env)
    assert r.returncode == 0, r.stderr
    assert "w  float32 [3]" in r.stdout
    r = run_model_diff(["inspect", "--unsafe-pickle", str(pt)], env)
    assert r.returncode == 2, r.stderr
    assert "model-diff[torch]" in r.stderr and str(pt) in r.stderr
    assert "Traceback" not in r.stderr


def test_usage_error_exits_2(pair: tuple[Path, Path]) -> None:
    """A bad flag value is a usage error (exit 2)."""
    result = CliRunner().invoke(cli, ["compare", str(pair[0]), str(pair[1]), "--format", "xml"])
    assert result.exit_code == 2


def test_demo_runs_and_shows_the_story(clean_env: dict[str, str]) -> None:
    """The demo compares its toy pair: frozen embeddings and later blocks moving more."""
    r = run_model_diff(["demo"], clean_env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.lower()
    assert "embed_tokens" in out and "frozen" in out
    assert "inverse_gradient" in out or "inverse gradient" in out


def test_compare_imports_only_its_own_command(pair: tuple[Path, Path]) -> None:
    """The group imports a command's module when it runs: `compare` loads neither merge,
    three-way, timeline, the gate nor, for files on disk, the git layer (their imports are
    start-up time compare would pay)."""
    import subprocess

    code = (
        "import sys\n"
        "from model_diff.cli import cli\n"
        "try:\n"
        "    cli.main(args=sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    argv = ["compare", str(pair[0]), str(pair[1]), "--format", "json"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    )
    loaded = set(proc.stderr.split())
    assert "model_diff.cli_core" in loaded
    for module in ("cli_merge", "merge", "threeway", "cli_timeline", "timeline", "cli_gate"):
        assert f"model_diff.{module}" not in loaded, module
    # two files on disk: the git layer is not needed (only REV:path arguments load it)
    assert "model_diff.gitdriver.git" not in loaded
    # a small pair runs on the calling thread; npz's zipfile and a bug's traceback load on need
    for module in ("concurrent.futures", "zipfile", "traceback"):
        assert module not in loaded, module
    assert json.loads(proc.stdout)["summary"]


def test_every_command_has_help() -> None:
    """--help works on the group and every command."""
    runner = CliRunner()
    assert runner.invoke(cli, ["--help"]).exit_code == 0
    for name in all_commands():
        r = runner.invoke(cli, [name, "--help"])
        assert r.exit_code == 0, name
        assert "Usage:" in r.stdout


def test_version_names_the_metrics_backend() -> None:
    """--version says which metrics path is active."""
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and "metrics backend" in r.stdout
    assert sys.version_info >= (3, 10)


def test_the_cli_runs_without_the_cyclic_collector(clean_env: dict[str, str]) -> None:
    """The entry point runs one command and leaves: the cyclic garbage collector is off
    while it runs (it only rescanned what the command keeps alive); the library leaves it
    as the caller has it."""
    import subprocess

    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print(gc.isenabled(), file=sys.stderr))\n"
        "import model_diff\n"
        "print(gc.isenabled(), file=sys.stderr)\n"
        "from model_diff.__main__ import main\n"
        "main(['--version'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=clean_env, capture_output=True, text=True)
    assert r.returncode == 0 and "metrics backend" in r.stdout, r.stderr
    assert r.stderr.split() == ["True", "False"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_cli_starts_no_blas_threads(clean_env: dict[str, str]) -> None:
    """numpy's OpenBLAS starts a thread per core at import unless told otherwise; the entry
    point tells it (model-diff keeps BLAS single-threaded and runs its own workers), so a
    command that imports numpy runs on one thread; an explicit user setting is kept."""
    import subprocess

    code = (
        "import atexit, os, sys\n"
        "atexit.register(lambda: print(len(os.listdir('/proc/self/task')),"
        " os.environ['OPENBLAS_NUM_THREADS'], file=sys.stderr))\n"
        "from model_diff.__main__ import main\n"
        "main(['--version'])\n"
    )
    env = {k: v for k, v in clean_env.items() if k != "OPENBLAS_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "metrics backend" in r.stdout, r.stderr
    assert r.stderr.split() == ["1", "1"]
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env, OPENBLAS_NUM_THREADS="2"),
        capture_output=True,
        text=True,
    )
    assert r.stderr.split()[1] == "2"


def _on_a_pty(
    args: list[str], env: dict[str, str], *, stdout_pty: bool = False
) -> tuple[int, bytes, bytes]:
    """Run `python -m model_diff ARGS` with stderr (and stdout, if asked) on a pseudo-terminal:
    (exit code, what the terminal received, stdout when it is a pipe)."""
    import pty
    import subprocess

    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "model_diff", *args],
            env=env,
            stdout=slave if stdout_pty else subprocess.PIPE,
            stderr=slave,
            check=False,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the pty's other end is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.returncode, b"".join(chunks), proc.stdout or b""


def test_progress_goes_to_stderr_only_on_a_terminal(
    pair: tuple[Path, Path], clean_env: dict[str, str], tmp_path: Path
) -> None:
    """On a terminal, compare shows [done/total] progress on stderr; stdout stays the report.
    Tensor names in the progress line are escaped: a hostile checkpoint's names send no
    control sequence of their own (only the line's own CR + erase-line)."""
    from tests.hostile import HOSTILE_NAMES, assert_terminal_safe, hostile_pair

    rc, err_bytes, out = _on_a_pty(
        ["compare", str(pair[0]), str(pair[1]), "--format", "json"], clean_env
    )
    err = err_bytes.decode()
    assert rc == 0
    n = len(toy_transformer(n_blocks=3, d_model=16, vocab=64))
    assert f"[1/{n}]" in err and f"[{n}/{n}]" in err
    _strict_json(out.decode())  # the report itself is untouched by the progress line

    old, new = hostile_pair(tmp_path / "hostile")
    rc, err_bytes, _ = _on_a_pty(["compare", str(old), str(new), "--format", "json"], clean_env)
    err = err_bytes.decode()
    assert rc == 0 and f"[{len(HOSTILE_NAMES) + 1}/{len(HOSTILE_NAMES) + 1}]" in err
    assert_terminal_safe(err.replace("\r\x1b[2K", "").replace("\r\n", "\n"), what="progress")
    assert "\\x1b]0;pwned\\x07" in err  # shown, escaped


def test_color_follows_the_flag_no_color_and_the_terminal(
    pair: tuple[Path, Path], clean_env: dict[str, str]
) -> None:
    """--color auto colours a terminal unless NO_COLOR is set; never and always decide."""
    args = ["compare", str(pair[0]), str(pair[1])]
    colour = b"\x1b[1m"
    no_color = dict(clean_env)  # the test environment sets NO_COLOR=1
    with_color = {k: v for k, v in clean_env.items() if k != "NO_COLOR"}
    with_color["TERM"] = "xterm"
    assert colour in _on_a_pty(args, with_color, stdout_pty=True)[1]
    assert colour not in _on_a_pty(args, no_color, stdout_pty=True)[1]
    assert colour not in _on_a_pty([*args, "--color", "never"], with_color, stdout_pty=True)[1]
    piped = run_model_diff([*args, "--color", "always"], no_color)
    assert piped.returncode == 0 and "\x1b[1m" in piped.stdout
    assert "\x1b[" not in run_model_diff(args, with_color).stdout  # auto, not a terminal


def test_readme_lists_every_command() -> None:
    """The README's command table names every command the CLI has."""
    from tests.conftest import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("All commands", 1)[1].split("\n\n", 2)[1]
    for name in all_commands():
        assert re.search(rf"`{re.escape(name)}[ `]", table), name
