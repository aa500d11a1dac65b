"""open_checkpoint: format detection by content before extension, and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_diff.errors import CheckpointError, UnknownFormatError
from model_diff.formats import READERS, detect_format, load_checkpoint, open_checkpoint
from model_diff.toy import save_safetensors

STATE = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}


def test_bin_that_is_safetensors_is_read_as_safetensors(tmp_path: Path) -> None:
    """A ``.bin`` whose bytes are safetensors is detected by content, not by its extension."""
    save_safetensors(tmp_path / "pytorch_model.bin", STATE)
    with open_checkpoint(tmp_path / "pytorch_model.bin") as ckpt:
        assert ckpt.format == "safetensors"
        assert ckpt["w"].array().tolist() == [0, 1, 2, 3, 4, 5]


def test_npy_bytes_under_any_name_are_numpy(tmp_path: Path) -> None:
    """numpy's magic decides, whatever the file is called."""
    np.save(tmp_path / "weights.npy", STATE["w"])
    (tmp_path / "weights.npy").rename(tmp_path / "weights.dat")
    assert detect_format(str(tmp_path / "weights.dat")) == "numpy"


def test_extension_decides_when_content_is_not_recognised(tmp_path: Path) -> None:
    """A truncated .safetensors goes to the safetensors reader, which says what is wrong."""
    (tmp_path / "m.safetensors").write_bytes((10_000).to_bytes(8, "little") + b"{")
    assert detect_format(str(tmp_path / "m.safetensors")) == "safetensors"
    with pytest.raises(CheckpointError, match="runs past the end"):
        open_checkpoint(tmp_path / "m.safetensors")


@pytest.mark.parametrize("ext", [".bin", ".pt", ".pth", ".ckpt"])
def test_a_pytorch_extension_needs_zip_or_pickle_content(tmp_path: Path, ext: str) -> None:
    """A PyTorch extension sends a file to the PyTorch reader only when its bytes start a zip
    archive or a pickle: a text file is "not a checkpoint", with no pickle advice."""
    import pickle
    import zipfile

    text = tmp_path / f"vocab{ext}"
    text.write_text("hello world\n")
    with pytest.raises(UnknownFormatError, match="is not a checkpoint") as info:
        detect_format(str(text))
    assert "hello world" in str(info.value) and "unsafe" not in str(info.value)
    pickled = tmp_path / f"p{ext}"
    pickled.write_bytes(pickle.dumps({"w": 1}, protocol=2))
    assert detect_format(str(pickled)) == "pytorch"
    with zipfile.ZipFile(tmp_path / f"z{ext}", "w") as zf:
        zf.writestr("archive/version", "3\n")
    assert detect_format(str(tmp_path / f"z{ext}")) == "pytorch"


def test_unknown_format_names_the_file_and_the_supported_formats(tmp_path: Path) -> None:
    """Bytes that no reader recognises under an unknown extension raise UnknownFormatError."""
    (tmp_path / "notes.txt").write_text("hello, not a checkpoint\n")
    with pytest.raises(UnknownFormatError) as info:
        open_checkpoint(tmp_path / "notes.txt")
    msg = str(info.value)
    assert str(tmp_path / "notes.txt") in msg and "safetensors" in msg and ".npz" in msg


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist raises CheckpointError naming it."""
    with pytest.raises(CheckpointError, match="no such file or directory") as info:
        open_checkpoint(tmp_path / "nope.safetensors")
    assert str(tmp_path / "nope.safetensors") in str(info.value)


def test_forced_format_overrides_detection(tmp_path: Path) -> None:
    """format= picks the reader: safetensors bytes forced through numpy fail as numpy."""
    save_safetensors(tmp_path / "m.safetensors", STATE)
    with pytest.raises(CheckpointError, match=r"not a valid \.npy"):
        open_checkpoint(tmp_path / "m.safetensors", format="npy")
    with pytest.raises(UnknownFormatError, match="unknown format 'keras'"):
        open_checkpoint(tmp_path / "m.safetensors", format="keras")


def test_load_checkpoint_is_the_original_name_of_open_checkpoint() -> None:
    """The original API's load_checkpoint is the same function."""
    import model_diff

    assert load_checkpoint is open_checkpoint is model_diff.load_checkpoint


def test_registry_lists_every_reader_once() -> None:
    """Readers are registered by the name Checkpoint.format reports."""
    assert list(READERS) == ["safetensors", "numpy", "pytorch", "gguf", "onnx", "huggingface"]
    assert all(k == r.NAME for k, r in READERS.items())


def test_opening_safetensors_imports_neither_torch_nor_dulwich(tmp_path: Path) -> None:
    """The textconv path (safetensors) stays light: no torch, dulwich, click or jinja2."""
    save_safetensors(tmp_path / "m.safetensors", STATE)
    code = (
        "import sys; from model_diff.formats import open_checkpoint; "
        f"c = open_checkpoint({str(tmp_path / 'm.safetensors')!r}); c['w'].array(); "
        "print(sorted(m for m in ('torch', 'dulwich', 'click', 'jinja2') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.stdout.strip() == "[]"


def test_select_narrows_flat_formats_by_name_prefix(tmp_path: Path) -> None:
    """safetensors (and npz) files are taken as written; select= still narrows them to the
    tensors under a dotted prefix, named relative to it."""
    import numpy as np

    from model_diff.errors import CheckpointError
    from model_diff.formats import open_checkpoint
    from model_diff.toy import save_safetensors

    state = {"ema.w": np.ones(2, np.float32), "model.w": np.zeros(2, np.float32)}
    save_safetensors(tmp_path / "m.safetensors", state)
    with open_checkpoint(tmp_path / "m.safetensors", select="model") as ckpt:
        assert ckpt.layer_names == ["w"] and ckpt["w"].array().tolist() == [0.0, 0.0]
    with pytest.raises(CheckpointError, match="choose one of: ema, model"):
        open_checkpoint(tmp_path / "m.safetensors", select="student")


def test_page_release_hands_back_aligned_runs_of_what_was_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """page_release merges the ranges reported read (any order) and hands them back in runs
    aligned to huge pages, of RELEASE_RUN bytes or more (or reaching the mapping's end),
    never touching a byte not reported; what waits stays under RELEASE_LIMIT, past which
    every whole page read goes back."""
    import mmap

    from model_diff.formats import base

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(base, "_dontneed", lambda: lambda mm, s, n: calls.append((s, n)))
    huge, run, page = base.HUGE_PAGE, base.RELEASE_RUN, mmap.PAGESIZE

    class Mapping:
        def __init__(self, size: int) -> None:
            self.size = size

        def __len__(self) -> int:
            return self.size

    m = Mapping(100 * huge + 100)
    base.page_release(m, 100, huge + 5)  # type: ignore[arg-type]
    assert calls == []  # no run of RELEASE_RUN yet: it waits
    base.page_release(m, 2 * huge + 7, run + huge)  # type: ignore[arg-type]
    assert calls == []  # not touching the first range, and its inside is short of a run
    base.page_release(m, huge + 5, 2 * huge + 7)  # type: ignore[arg-type]
    # one range [100, run + huge) now: its aligned inside goes back in one call
    assert calls == [(huge, run)]
    calls.clear()
    base.page_release(m, 98 * huge + 1, 100 * huge + 100)  # type: ignore[arg-type]
    assert calls == [(99 * huge, huge + 100)]  # reaches the end: handed back up to it
    calls.clear()
    # Read again (a second pass over a tensor maps its pages again): handed back again.
    base.page_release(m, 2 * huge, 3 * huge + 5)  # type: ignore[arg-type]
    assert calls == [(2 * huge, huge)]
    calls.clear()
    # Two runs handed back, then the bytes between them: bounded by run edges on both
    # sides, they go back whatever their size.
    base.page_release(m, 40 * huge + 9, 40 * huge + 9 + run + huge)  # type: ignore[arg-type]
    base.page_release(m, 50 * huge + 3, 50 * huge + 3 + run + huge)  # type: ignore[arg-type]
    assert calls == [(41 * huge, run), (51 * huge, run)]
    calls.clear()
    base.page_release(m, 40 * huge + 9 + run + huge, 50 * huge + 3)  # type: ignore[arg-type]
    assert calls == [(41 * huge + run, 10 * huge - run)]
    calls.clear()
    # Ranges far apart: each waits until together they pass RELEASE_LIMIT; then every whole
    # page read goes back (rounded inward: the unread neighbours keep theirs).
    starts = [10 * huge + 7 + i * 3 * huge for i in range(base.RELEASE_LIMIT // huge)]
    for s in starts:
        base.page_release(m, s, s + huge + page)  # type: ignore[arg-type]
    assert calls, "RELEASE_LIMIT passed, nothing handed back"
    read = [(s, s + huge + page) for s in starts]
    read += [(100, huge), (98 * huge + 1, 99 * huge)]  # reported earlier, still waiting
    read += [(40 * huge + 9, 41 * huge), (50 * huge + 3 + run + huge, 60 * huge)]
    for s, n in calls:
        assert s % page == 0 and any(lo <= s and s + n <= hi for lo, hi in read), (s, n)
