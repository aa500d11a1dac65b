"""Bad input to the readers (issue 2, acceptance 4 and 5, reader side): each case raises its
typed error from model_diff.errors, on one line, naming the file, what is wrong and the fix."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model_diff.errors import (
    EXIT_USAGE,
    CheckpointError,
    LFSObjectMissingError,
    MissingDependencyError,
    ModelDiffError,
    UnknownFormatError,
)
from model_diff.formats import open_checkpoint
from model_diff.toy import save_safetensors, toy_transformer
from tests.conftest import PROJECT_ROOT

STATE = toy_transformer(n_blocks=1, d_model=8, vocab=16)


def truncated(tmp_path: Path) -> Path:
    save_safetensors(tmp_path / "model.safetensors", STATE)
    raw = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(raw[:-100])
    return tmp_path / "model.safetensors"


def empty(tmp_path: Path) -> Path:
    (tmp_path / "model.safetensors").write_bytes(b"")
    return tmp_path / "model.safetensors"


def empty_pt(tmp_path: Path) -> Path:
    (tmp_path / "model.pt").write_bytes(b"")
    return tmp_path / "model.pt"


def corrupt_header(tmp_path: Path) -> Path:
    save_safetensors(tmp_path / "model.safetensors", STATE)
    raw = bytearray((tmp_path / "model.safetensors").read_bytes())
    raw[9:21] = b"#garbage#!!!"  # keep the opening brace: the JSON itself is broken
    (tmp_path / "model.safetensors").write_bytes(bytes(raw))
    return tmp_path / "model.safetensors"


def unknown(tmp_path: Path) -> Path:
    (tmp_path / "weights.dat").write_bytes(b"\x13\x37WHAT" + b"\x00" * 64)
    return tmp_path / "weights.dat"


def lfs_pointer(tmp_path: Path) -> Path:
    oid = "ab" * 32
    (tmp_path / "model.safetensors").write_text(
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 4096\n"
    )
    return tmp_path / "model.safetensors"


def truncated_npy(tmp_path: Path) -> Path:
    np.save(tmp_path / "w.npy", np.ones(1000))
    (tmp_path / "w.npy").write_bytes((tmp_path / "w.npy").read_bytes()[:500])
    return tmp_path / "w.npy"


# (id, make the bad file, expected error type, words in the message, words in the hint)
CASES: list[tuple[str, Callable[[Path], Path], type[ModelDiffError], str, str]] = [
    ("truncated", truncated, CheckpointError, "truncated", "re-save or re-fetch"),
    ("empty", empty, CheckpointError, "is empty", "re-save or re-fetch"),
    ("empty-pt", empty_pt, CheckpointError, "is empty", "re-save or re-fetch"),
    ("corrupt-header", corrupt_header, CheckpointError, "not valid JSON", "safetensors"),
    ("unknown-format", unknown, UnknownFormatError, "not a checkpoint format", "safetensors"),
    (
        "lfs-pointer-without-object",
        lfs_pointer,
        LFSObjectMissingError,
        "abababababab (4096 bytes)",
        "git lfs fetch",
    ),
    ("truncated-npy", truncated_npy, CheckpointError, "truncated", "re-save or re-fetch"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_typed_one_line_error_naming_file_and_fix(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, Callable[[Path], Path], type[ModelDiffError], str, str],
) -> None:
    """Truncated, empty, corrupt, unknown and LFS-pointer inputs: typed error, exit code 2."""
    _, make, error, words, hint = case
    for var in ("GIT_DIR", "GIT_COMMON_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # outside any repository: the LFS object cannot be found
    path = make(tmp_path)
    with pytest.raises(error) as info:
        open_checkpoint(path)
    err = info.value
    msg = str(err)
    assert type(err) is error
    assert msg.startswith(f"{path}: ") and words in msg and "\n" not in msg
    assert err.hint is not None and hint in err.hint
    assert err.exit_code == EXIT_USAGE


def _run_blocking_torch(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``import torch`` fails as if not installed."""
    prelude = "import sys; sys.modules['torch'] = None\n"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        check=False,
    )


def test_unsafe_pickle_without_torch_says_install_the_extra(tmp_path: Path) -> None:
    """A .pt reads where torch is not importable; only unsafe_pickle=True (torch.load) raises
    MissingDependencyError, one line naming the extra."""
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    code = (
        "from model_diff.formats import open_checkpoint\n"
        "from model_diff.errors import MissingDependencyError\n"
        f"print(open_checkpoint({str(tmp_path / 'model.pt')!r}).layer_names)\n"
        "try:\n"
        f"    open_checkpoint({str(tmp_path / 'model.pt')!r}, unsafe_pickle=True)\n"
        "except MissingDependencyError as e:\n"
        "    print(type(e).__name__, e.exit_code, e, sep='|')\n"
    )
    out = _run_blocking_torch(code)
    assert out.returncode == 0, out.stderr
    names, error = out.stdout.rstrip("\n").split("\n")
    assert names == "['w']"
    name, code_, msg = error.split("|")
    assert name == MissingDependencyError.__name__ and code_ == "2"
    assert msg.startswith(f"{tmp_path / 'model.pt'}: ") and "model-diff[torch]" in msg


def test_safetensors_still_reads_without_torch(tmp_path: Path) -> None:
    """torch is optional: safetensors files open where torch cannot be imported."""
    save_safetensors(tmp_path / "m.safetensors", STATE)
    out = _run_blocking_torch(
        "from model_diff.formats import open_checkpoint\n"
        f"print(len(open_checkpoint({str(tmp_path / 'm.safetensors')!r})))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(STATE))


class _Touch:
    """Unpickling this runs ``touch <target>``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_pickle_that_would_run_code_runs_nothing(tmp_path: Path, kind: str) -> None:
    """Acceptance 5: a crafted os.system pickle never runs: in a torch zip the call is only
    recorded (the tensors beside it read, the payload listed as skipped); a bare pickle is
    not a torch.save file (a one-line CheckpointError)."""
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if kind == "torch-zip":
        torch = pytest.importorskip("torch")
        torch.save({"w": torch.ones(2), "payload": _Touch(target)}, path)
        with open_checkpoint(path) as ckpt:
            assert ckpt.layer_names == ["w"] and ckpt.skipped == ["payload"]
    else:
        with open(path, "wb") as f:
            pickle.dump({"payload": _Touch(target)}, f, protocol=2)
        with pytest.raises(CheckpointError, match=r"not a torch\.save checkpoint") as info:
            open_checkpoint(path)
        assert str(path) in str(info.value)
    assert not target.exists()
