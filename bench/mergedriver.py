"""Merge-driver benchmark: peak RSS and time of ``model-diff merge-driver`` as git runs it, on a
Git LFS repository holding a ``--size-gib`` safetensors checkpoint changed on two branches.

The three versions are ``bench/compare3.py``'s triple (OURS retrains the attention and the LM
head, THEIRS the second half of the blocks: the attention of the second half conflicts). They
are committed with Git LFS (main: base, ``theirs``, ``ours``) in a temporary repository, and
``model-diff install`` registers the driver. Then:

- ``driver fail``: the driver on the three pointer files exactly as git passes them (``%O %A
  %B %P`` from the repository's top), strategy ``fail``: it opens the LFS objects, finds the
  conflicts, writes the three-way report; exit 1.
- ``driver task-arithmetic``: the same with ``model-diff.mergeStrategy task-arithmetic``: it
  merges, stores the result as a new LFS object and writes its pointer; exit 0.
- ``git merge``: the whole ``git merge theirs`` on ``ours`` with task-arithmetic (git's own
  work included: the checkout smudges the merged object into the work tree).

Each runs in a fresh process; peak RSS comes from ``wait4`` (for ``git merge``, the largest
of git and the processes it waited for: git-lfs and the driver). The page cache is warmed
first. Not part of the test suite. Run from the repository root:

    python bench/mergedriver.py --size-gib 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare3 import MIB, ROOT, warm, write_triple
from engine import GIB

FILE = "model.safetensors"


def git(repo: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", *args], cwd=repo, stdout=subprocess.PIPE, check=True)
    return proc.stdout


def timed(cmd: list[str], cwd: Path) -> tuple[float, int, float, int]:
    """(wall s, peak RSS bytes, CPU s, exit code) of ``cmd``."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    return (
        wall,
        usage.ru_maxrss * 1024,
        usage.ru_utime + usage.ru_stime,
        os.waitstatus_to_exitcode(status),
    )


def build(d: Path, size_gib: float) -> Path:
    write_triple(d, size_gib, "fp32", "attention")
    repo = d / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "lfs", "install", "--local")
    git(repo, "lfs", "track", "*.safetensors")
    for branch, name in (("main", "base"), ("theirs", "theirs"), ("ours", "ours")):
        if branch != "main":
            git(repo, "checkout", "-q", "-b", branch, "main")
        shutil.copyfile(d / f"{name}.safetensors", repo / FILE)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", name)
    subprocess.run(
        [sys.executable, "-m", "model_diff", "install"],
        cwd=repo,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return repo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=1.0, help="size of the checkpoint")
    ap.add_argument("--keep", action="store_true", help="keep the generated repository")
    args = ap.parse_args(argv)
    d = Path(tempfile.mkdtemp(prefix="model-diff-bench-driver-"))
    env_keys = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")
    for k in env_keys:
        os.environ.setdefault(k, "bench")
    os.environ["PYTHONPATH"] = str(ROOT)
    try:
        t = time.perf_counter()
        repo = build(d, args.size_gib)
        took = time.perf_counter() - t
        print(f"repository: {args.size_gib:g} GiB checkpoint x 3 commits ({took:.1f} s)")
        objects = list((repo / ".git" / "lfs" / "objects").rglob("*"))
        warm([p for p in objects if p.is_file()])
        for side, rev in (("o", "main"), ("a", "ours"), ("b", "theirs")):
            (repo / f".merge_{side}").write_bytes(git(repo, "cat-file", "blob", f"{rev}:{FILE}"))
        driver = [sys.executable, "-m", "model_diff", "merge-driver", ".merge_o", ".merge_a"]
        driver += [".merge_b", FILE]
        print(f"{'run':<26} {'wall s':>8} {'CPU s':>8} {'peak RSS':>10}  exit")
        for strategy in ("fail", "task-arithmetic"):
            git(repo, "config", "model-diff.mergeStrategy", strategy)
            a = (repo / ".merge_a").read_bytes()
            wall, rss, cpu, code = timed(driver, repo)
            (repo / ".merge_a").write_bytes(a)
            print(f"{'driver ' + strategy:<26} {wall:8.2f} {cpu:8.2f} {rss / MIB:7.0f} MiB  {code}")
        wall, rss, cpu, code = timed(["git", "merge", "-q", "--no-edit", "theirs"], repo)
        print(
            f"{'git merge (task-arith.)':<26} {wall:8.2f} {cpu:8.2f} {rss / MIB:7.0f} MiB  {code}"
        )
        size = (repo / FILE).stat().st_size
        print(f"merged work-tree file: {size / GIB:.2f} GiB; git lfs fsck: ", end="", flush=True)
        print(git(repo, "lfs", "fsck").decode().strip())
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
