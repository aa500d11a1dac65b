"""Benchmark: which backend should read git objects — dulwich, or the git CLI?

model-diff reads small blobs at a revision (Git LFS pointers, ``config.json``, index files of
a HuggingFace folder) by path. This script builds a repository with N small blobs under
nested folders and times reading K of them at ``HEAD`` by path, each way run as a fresh
Python process (so import and start-up costs count, as they do for a real command):

- ``dulwich``: ``Repo(path)``, ``tree_lookup_path`` per path, the blob's data (public API);
- ``cli-batch``: one ``git cat-file --batch`` process fed ``HEAD:path`` lines;
- ``cli-per-call``: one ``git cat-file blob HEAD:path`` process per path.

Also: the bare start-up of each (``import dulwich.repo`` + open, vs one ``git rev-parse``).
The objects are packed (``git gc``), as in a cloned repository; ``--loose`` leaves them loose.
dulwich is not a dependency of model-diff (this measurement is why): ``pip install dulwich``
first. Run from the repository root (a Markdown table on stdout)::

    python bench/gitbackend.py [--blobs 2000] [--repeat 5] [--loose]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DULWICH = """
import sys
from dulwich.object_store import tree_lookup_path
from dulwich.repo import Repo
repo = Repo(sys.argv[1])
tree = repo[repo.head()].tree
n = 0
for p in sys.argv[2:]:
    mode, sha = tree_lookup_path(repo.object_store.__getitem__, tree, p.encode())
    n += len(repo.object_store[sha].as_raw_string())
print(n)
"""

CLI_BATCH = """
import subprocess, sys
paths = sys.argv[2:]
out = subprocess.run(["git", "-C", sys.argv[1], "cat-file", "--batch"], check=True,
                     input="".join(f"HEAD:{p}\\n" for p in paths).encode(),
                     capture_output=True).stdout
n, i = 0, 0
for _ in paths:
    j = out.index(b"\\n", i)
    size = int(out[i:j].split()[2])
    n += size
    i = j + 1 + size + 1
print(n)
"""

CLI_PER_CALL = """
import subprocess, sys
n = 0
for p in sys.argv[2:]:
    n += len(subprocess.run(["git", "-C", sys.argv[1], "cat-file", "blob", f"HEAD:{p}"],
                            check=True, capture_output=True).stdout)
print(n)
"""

START_DULWICH = "import sys\nfrom dulwich.repo import Repo\nRepo(sys.argv[1]).head()\n"
START_CLI = (
    "import subprocess, sys\n"
    "subprocess.run(['git', '-C', sys.argv[1], 'rev-parse', 'HEAD'], check=True,"
    " capture_output=True)\n"
)


def build(root: Path, n: int, packed: bool) -> list[str]:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root)}
    repo = root / "repo"
    repo.mkdir()
    paths = []
    for i in range(n):
        rel = f"d{i % 20}/s{i % 7}/f{i}.txt"
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{i:064x}\nsize {i}\n")
        paths.append(rel)
    commit = ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "c"]
    for args in (["init", "-q"], ["add", "-A"], commit, *([["gc", "-q"]] if packed else [])):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return paths


def timed(code: str, args: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blobs", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loose", action="store_true", help="leave the objects loose (no git gc)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gitbackend-") as tmp:
        paths = build(Path(tmp), a.blobs, packed=not a.loose)
        repo = str(Path(tmp) / "repo")
        print(
            f"python {platform.python_version()}, {a.blobs} blobs "
            f"({'loose' if a.loose else 'packed'}), median of {a.repeat}\n"
        )
        print("| read K blobs by path | dulwich | cli-batch | cli-per-call |")
        print("|---|---:|---:|---:|")
        start = (timed(START_DULWICH, [repo], a.repeat), timed(START_CLI, [repo], a.repeat))
        print(f"| start-up only | {start[0] * 1e3:.0f} ms | {start[1] * 1e3:.0f} ms | |")
        for k in (1, 10, 100, 1000):
            sel = paths[:: max(1, len(paths) // k)][:k]
            row = [timed(c, [repo, *sel], a.repeat) for c in (DULWICH, CLI_BATCH, CLI_PER_CALL)]
            print(f"| K={k} | " + " | ".join(f"{t * 1e3:.0f} ms" for t in row) + " |")


if __name__ == "__main__":
    main()
