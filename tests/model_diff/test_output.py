"""``-o PATH``: written like ``open(PATH, "w")`` would, never replacing what is not a file.

Every case runs the real ``model-diff`` in a subprocess on a real checkpoint pair: a character
device (made with mknod, as root), a FIFO read by another thread, a symlink, an existing 0644
file, a new file under umask 022 and 077, ``/dev/stdout`` appending to a log, a pipe's
``/dev/fd/N`` (what ``>(cmd)`` passes), and destinations that cannot be written.
"""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from model_diff.toy import fine_tune, save_safetensors, toy_transformer
from tests.conftest import run_model_diff
from tests.gitdriver.history import git, init_repo


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    base = toy_transformer(n_blocks=1, d_model=8, vocab=16, seed=0)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_safetensors(a, base)
    save_safetensors(b, fine_tune(base, seed=1))
    return str(a), str(b)


def _umask(mask: int) -> Callable[[], None]:
    return lambda: os.umask(mask) and None


def _without_root_bypass() -> None:
    """In the child before exec: drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that file
    modes bind root too (tests run as root here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _compare(
    pair: tuple[str, str], out: str, env: dict[str, str], **kw: object
) -> subprocess.CompletedProcess[str]:
    return run_model_diff(["compare", *pair, "-o", out], env, **kw)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".model-diff-")]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_character_device_stays_a_device(
    pair: tuple[str, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """`-o` onto a character device (the null device, made here) writes into it: it is still
    the same device afterwards, not a regular file."""
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    before = os.stat(dev)
    r = _compare(pair, str(dev), clean_env)
    assert r.returncode == 0, r.stderr
    after = os.stat(dev)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino
    assert _leftovers(tmp_path) == []


def test_a_fifo_reader_gets_the_report(
    pair: tuple[str, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A FIFO is written in place: the reader on the other end receives the whole report and
    the FIFO is still a FIFO."""
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = _compare(pair, str(fifo), clean_env, timeout=120)
    reader.join(timeout=60)
    assert r.returncode == 0, r.stderr
    assert got and got[0].startswith(b"model-diff: ") and b"Summary" in got[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symlink_is_written_through(
    pair: tuple[str, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """The link stays a link to the same place; its target holds the report."""
    (tmp_path / "reports").mkdir()
    target = tmp_path / "reports" / "latest.txt"
    target.write_text("old report\n")
    link = tmp_path / "report.txt"
    link.symlink_to(Path("reports") / "latest.txt")
    r = _compare(pair, str(link), clean_env)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(Path("reports") / "latest.txt")
    assert target.read_text().startswith("model-diff: ")
    # A dangling link: its target is created, as open(link, "w") would.
    dangling = tmp_path / "new-link.txt"
    dangling.symlink_to("made-by-report.txt")
    assert _compare(pair, str(dangling), clean_env).returncode == 0
    assert dangling.is_symlink()
    assert (tmp_path / "made-by-report.txt").read_text().startswith("model-diff: ")


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_a_new_file_gets_the_umask_mode(
    pair: tuple[str, str], tmp_path: Path, clean_env: dict[str, str], umask: int, mode: int
) -> None:
    """A new report has the mode open(path, "w") gives under the umask (0666 & ~umask)."""
    out = tmp_path / "new.txt"
    r = _compare(pair, str(out), clean_env, preexec_fn=_umask(umask))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
    assert _leftovers(tmp_path) == []


def test_an_existing_file_keeps_its_mode_and_is_replaced_whole(
    pair: tuple[str, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Overwriting a 0644 file (under umask 077) leaves 0644 and only the new report."""
    out = tmp_path / "report.txt"
    out.write_text("x" * 100_000)
    out.chmod(0o644)
    r = _compare(pair, str(out), clean_env, preexec_fn=_umask(0o077))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    text = out.read_text()
    assert text.startswith("model-diff: ") and "x" * 100 not in text


def test_dev_stdout_appends_where_the_shell_points_it(
    pair: tuple[str, str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """`-o /dev/stdout >> log`: the report is added to the log (written through our own
    descriptor, never reopened with truncation or replaced)."""
    log = tmp_path / "log.txt"
    log.write_text("earlier line\n")
    with open(log, "a") as f:
        r = subprocess.run(
            [sys.executable, "-m", "model_diff", "compare", *pair, "-o", "/dev/stdout"],
            env=clean_env,
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert text.startswith("earlier line\nmodel-diff: ") and "Summary" in text


def test_a_pipe_descriptor_like_process_substitution(
    pair: tuple[str, str], clean_env: dict[str, str]
) -> None:
    """`-o >(cmd)` arrives as /dev/fd/N, a pipe: the report goes down the pipe."""
    read_end, write_end = os.pipe()
    got: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read_end, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        r = run_model_diff(
            ["compare", *pair, "-o", f"/dev/fd/{write_end}"], clean_env, pass_fds=(write_end,)
        )
    finally:
        os.close(write_end)
    reader.join(timeout=60)
    assert r.returncode == 0, r.stderr
    assert got and got[0].startswith(b"model-diff: ")


def _as_unprivileged() -> Callable[[], None] | None:
    return _without_root_bypass if os.geteuid() == 0 else None


@pytest.mark.parametrize("case", ["missing folder", "read-only folder", "read-only file", "dir"])
def test_an_unwritable_destination_fails_before_any_work(
    tmp_path: Path, clean_env: dict[str, str], case: str
) -> None:
    """The destination is checked while the command line is read: exit 2, one line naming
    it, and the inputs (which do not even exist here) are never opened."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "old.txt").write_text("keep me\n")
    (ro / "old.txt").chmod(0o444)
    dests = {
        "missing folder": tmp_path / "nope" / "r.txt",
        "read-only folder": ro / "r.txt",
        "read-only file": ro / "old.txt",
        "dir": ro,
    }
    if case == "read-only folder":
        ro.chmod(0o555)
    try:
        r = run_model_diff(
            ["compare", "missing-a.safetensors", "missing-b.safetensors", "-o", str(dests[case])],
            clean_env,
            cwd=tmp_path,
            preexec_fn=_as_unprivileged(),
        )
    finally:
        ro.chmod(0o755)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    if case == "dir":  # click's own usage error for a directory
        assert "is a directory" in lines[-1]
    else:
        assert len(lines) == 1 and str(dests[case]) in lines[0], r.stderr
    assert "missing-a" not in r.stderr  # failed on -o, before the inputs were looked at
    assert (ro / "old.txt").read_text() == "keep me\n"
    assert _leftovers(ro) == []


def test_open_without_output_is_refused_before_any_work(clean_env: dict[str, str]) -> None:
    """`--open` without `-o` is a usage error at once (the inputs are never read)."""
    r = run_model_diff(["compare", "missing-a.safetensors", "b", "--open"], clean_env)
    assert r.returncode == 2 and "--open needs -o" in r.stderr
    assert "missing-a" not in r.stderr and r.stdout == ""


@pytest.fixture
def repo(tmp_path: Path, clean_env: dict[str, str]) -> Path:
    """A repository whose last commit fine-tunes model.safetensors."""
    root = tmp_path / "repo"
    init_repo(root, clean_env, lfs=False)
    base = toy_transformer(n_blocks=1, d_model=8, vocab=16, seed=0)
    save_safetensors(root / "model.safetensors", base)
    git(root, clean_env, "add", ".")
    git(root, clean_env, "commit", "-q", "-m", "base")
    save_safetensors(root / "model.safetensors", fine_tune(base, seed=1))
    git(root, clean_env, "commit", "-q", "-am", "tuned")
    return root


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "{a}", "{b}", "-o"],
        ["inspect", "{a}", "-o"],
        ["demo", "-o"],
        ["timeline", "{a}", "{b}", "-o"],
        ["diff", "HEAD~1", "HEAD", "-o"],
        ["difftool", "{a}", "{b}", "-o"],
        ["ci", "--base", "HEAD~1", "--report"],
    ],
    ids=lambda c: c[0],
)
def test_every_output_option_writes_through_a_symlink(
    repo: Path, tmp_path: Path, clean_env: dict[str, str], command: list[str]
) -> None:
    """Each command's report file goes through the one writer: a symlink stays a link and
    its target, created with the umask's mode, holds the report; a missing folder is refused
    before any work."""
    a, b = (
        str(repo / "model.safetensors"),
        str(tmp_path / "b.safetensors"),
    )
    save_safetensors(b, toy_transformer(n_blocks=1, d_model=8, vocab=16, seed=3))
    args = [c.format(a=a, b=b) for c in command]
    link = tmp_path / "out.link"
    link.symlink_to(tmp_path / "target.out")
    r = run_model_diff([*args, str(link)], clean_env, cwd=repo, preexec_fn=_umask(0o027))
    assert r.returncode in (0, 1), r.stderr  # ci: 1 when the policy fails the change
    assert link.is_symlink() and (tmp_path / "target.out").stat().st_size > 0
    assert stat.S_IMODE((tmp_path / "target.out").stat().st_mode) == 0o640
    bad = run_model_diff([*args, str(tmp_path / "no" / "r")], clean_env, cwd=repo)
    assert bad.returncode == 2 and "folder does not exist" in bad.stderr
