"""Benchmark: the textconv driver through real git + git-lfs on a 1 GiB checkpoint pair.

Builds a Git LFS repository holding a ~1 GiB float32 safetensors checkpoint (16 tensors of
64 MiB) in two commits that differ in one tensor, installs the driver with
``model-diff install`` and measures, each as a fresh process tree (wall time, and peak RSS of
the largest process in the tree: git, git-lfs or the textconv):

- ``git diff HEAD~1 HEAD``: git smudges both sides through git-lfs, then runs the textconv
  (model-diff's cache off, then on and warm);
- the same with ``GIT_LFS_SKIP_SMUDGE=1``: pointers reach the textconv, which reads the
  objects straight from the LFS store (cache off, then on and warm);
- ``model-diff textconv FILE`` alone, full and ``--fast``, cache off, file in page cache:
  seconds per GiB.

``--pt-twin`` measures instead a 232 MB PyTorch checkpoint (67 float32 tensors, torch.save
zip format) against its safetensors twin, each in its own LFS repository, two commits with 3
tensors changed: ``git diff HEAD~1 HEAD`` with model-diff's textconv cache emptied before
every run (best of 3). The .pt is read by model-diff's own reader (no torch in the textconv);
torch is needed here only to write the file. The tensor lines of both must be identical.

Run from the repository root (numbers go to stdout as a Markdown table and to
``bench/out/git.json``, or ``bench/out/git_pt_twin.json``):

    python bench/git.py [--size-mib 1024] [--workdir DIR] [--keep]
    python bench/git.py --pt-twin [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TENSOR_MIB = 64


def write_checkpoint(path: Path, n_tensors: int, seed: int) -> list[tuple[str, int, int]]:
    """Stream a float32 safetensors file tensor by tensor; returns (name, start, end) offsets
    relative to the data section."""
    numel = TENSOR_MIB * (1 << 20) // 4
    names = [f"model.layers.{i}.mlp.weight" for i in range(n_tensors)]
    header: dict[str, object] = {}
    spans = []
    for i, name in enumerate(sorted(names)):
        start = i * numel * 4
        header[name] = {
            "dtype": "F32",
            "shape": [numel // 4096, 4096],
            "data_offsets": [start, start + numel * 4],
        }
        spans.append((name, start, start + numel * 4))
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for _ in spans:
            f.write((rng.standard_normal(numel, dtype=np.float32) * 0.02).tobytes())
    return [(n, s + 8 + len(hbytes), e + 8 + len(hbytes)) for n, s, e in spans]


def write_small(path: Path) -> int:
    """A small real checkpoint (the toy transformer, ~40 KB): what startup time is about."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from model_diff.toy import save_safetensors, toy_transformer

    sd = toy_transformer(n_blocks=2, d_model=16, vocab=32)
    save_safetensors(path, sd)
    return len(sd)


def env_for(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "MODEL_DIFF_", "PRE_COMMIT"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        PAGER="cat",
        GIT_PAGER="cat",
        PYTHONPATH=str(ROOT),
        TMPDIR=str(home / "tmp"),
    )
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


TIME = shutil.which("time", path="/usr/bin:/bin") or "/usr/bin/time"


def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, bytes]:
    """(wall seconds, peak RSS in bytes of the largest process in the tree, stdout).

    The RSS comes from GNU time (``%M``): it forks the command from a small process, whereas
    a child forked from this (large) Python process would report our own RSS as its floor.
    """
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "MAXRSS_KB %M", *cmd],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
        wall = time.perf_counter() - t0
        err = proc.stderr.decode(errors="replace")
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
        rss_kb = int(err.rsplit("MAXRSS_KB ", 1)[1].split()[0])
        out.seek(0)
        return wall, rss_kb * 1024, out.read()


def git(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


TWIN_TENSORS = 67
TWIN_SHAPE = (1024, 845)  # 67 x 3.46 MB = 232 MB of float32
TWIN_CHANGED = (5, 33, 60)


def _twin_states() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    old = {
        f"model.layers.{i}.weight": (rng.standard_normal(TWIN_SHAPE, dtype=np.float32) * 0.02)
        for i in range(TWIN_TENSORS)
    }
    new = dict(old)
    for i in TWIN_CHANGED:
        name = f"model.layers.{i}.weight"
        new[name] = old[name] + np.float32(1e-3)
    return old, new


def _write_twin(path: Path, state: dict[str, np.ndarray], fmt: str) -> None:
    if fmt == "pt":
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    else:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from model_diff.toy import save_safetensors

        save_safetensors(path, state)


def pt_twin(work: Path) -> int:
    """``git diff HEAD~1 HEAD`` of a 232 MB .pt and of its safetensors twin (see module doc)."""
    old, new = _twin_states()
    secs: dict[str, float] = {}
    rss: dict[str, int] = {}
    sizes: dict[str, int] = {}
    lines: dict[str, list[str]] = {}
    for fmt in ("pt", "safetensors"):
        env = env_for(work / f"home-{fmt}")
        repo = work / f"repo-{fmt}"
        repo.mkdir()
        git(["init", "-q", "-b", "main"], repo, env)
        git(["lfs", "install", "--local"], repo, env)
        git(["lfs", "track", f"*.{fmt}"], repo, env)
        subprocess.run(
            [sys.executable, "-m", "model_diff", "install"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        ckpt = repo / f"model.{fmt}"
        _write_twin(ckpt, old, fmt)
        git(["add", "-A"], repo, env)
        git(["commit", "-q", "-m", "v1"], repo, env)
        _write_twin(ckpt, new, fmt)
        git(["commit", "-q", "-am", "v2"], repo, env)
        sizes[fmt] = ckpt.stat().st_size
        cache = repo / ".git" / "model-diff"
        runs = []
        for _ in range(3):
            shutil.rmtree(cache, ignore_errors=True)  # an empty cache every run
            runs.append(measure(["git", "diff", "HEAD~1", "HEAD"], repo, env))
        secs[fmt], rss[fmt], out = min(runs)
        lines[fmt] = [ln for ln in out.decode().splitlines() if ln[:1] in "-+" and " xxh3:" in ln]
    if lines["pt"] != lines["safetensors"] or len(lines["pt"]) != 2 * len(TWIN_CHANGED):
        raise SystemExit(f"tensor lines differ between the twins: {lines}")
    ratio = secs["pt"] / secs["safetensors"]
    head = f"{TWIN_TENSORS} tensors, {len(TWIN_CHANGED)} changed, textconv cache empty"
    print(f"| git diff HEAD~1 HEAD ({head}) | wall s | peak RSS MiB |")
    print("|---|---:|---:|")
    for fmt in ("pt", "safetensors"):
        print(
            f"| {sizes[fmt] / 1e6:.0f} MB .{fmt} via LFS | {secs[fmt]:.2f} "
            f"| {rss[fmt] / 2**20:.0f} |"
        )
    print(f"\n.pt / .safetensors = {ratio:.2f}x (target: within 1.5x)")
    results = {
        "tensors": TWIN_TENSORS,
        "changed": len(TWIN_CHANGED),
        "bytes": sizes,
        "seconds": secs,
        "peak_rss_bytes": rss,
        "ratio": ratio,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
    }
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "git_pt_twin.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="checkpoint size (default 1024)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to build (default: tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--pt-twin", action="store_true", help="232 MB .pt against its safetensors twin"
    )
    args = ap.parse_args(argv)
    if args.pt_twin:
        work = Path(tempfile.mkdtemp(prefix="model-diff-bench-", dir=args.workdir))
        try:
            return pt_twin(work)
        finally:
            if args.keep:
                print(f"kept {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
    n_tensors = max(1, args.size_mib // TENSOR_MIB)
    work = Path(tempfile.mkdtemp(prefix="model-diff-bench-", dir=args.workdir))
    try:
        env = env_for(work / "home")
        repo = work / "repo"
        repo.mkdir()
        git(["init", "-q", "-b", "main"], repo, env)
        git(["lfs", "install", "--local"], repo, env)
        git(["lfs", "track", "*.safetensors"], repo, env)
        subprocess.run(
            [sys.executable, "-m", "model_diff", "install"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        ckpt = repo / "model.safetensors"
        t0 = time.perf_counter()
        spans = write_checkpoint(ckpt, n_tensors, seed=0)
        size = ckpt.stat().st_size
        print(
            f"built {size / 2**30:.2f} GiB checkpoint in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        git(["add", "-A"], repo, env)
        git(["commit", "-q", "-m", "v1"], repo, env)
        v1_copy = work / "v1.safetensors"
        shutil.copy(ckpt, v1_copy)
        name, start, end = spans[len(spans) // 2]
        with open(ckpt, "r+b") as f:  # change one tensor in place
            f.seek(start)
            rng = np.random.default_rng(1)
            f.write((rng.standard_normal((end - start) // 4, dtype=np.float32) * 0.02).tobytes())
        git(["commit", "-q", "-am", f"v2: {name} changed"], repo, env)

        results: dict[str, object] = {
            "size_bytes": size,
            "tensors": n_tensors,
            "changed": name,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "metrics_backend": subprocess.run(
                [sys.executable, "-c", "from model_diff import metrics; print(metrics.BACKEND)"],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout.strip(),
            "load_average_at_start": os.getloadavg()[0],
            "git": subprocess.run(
                ["git", "--version"], check=True, capture_output=True, text=True
            ).stdout.strip(),
        }
        rows = []
        no_cache = dict(env, MODEL_DIFF_NO_CACHE="1")
        skip = dict(env, GIT_LFS_SKIP_SMUDGE="1")
        skip_no_cache = dict(skip, MODEL_DIFF_NO_CACHE="1")
        diff = ["git", "diff", "HEAD~1", "HEAD"]
        cases = [
            ("git diff HEAD~1 HEAD: LFS smudge, cache off", diff, no_cache),
            ("git diff HEAD~1 HEAD: LFS smudge, cache empty (fills it)", diff, env),
            ("git diff HEAD~1 HEAD: LFS smudge, cache hit (content key)", diff, env),
            (
                "GIT_LFS_SKIP_SMUDGE=1 git diff: pointers read from the LFS store, cache off",
                diff,
                skip_no_cache,
            ),
            ("GIT_LFS_SKIP_SMUDGE=1 git diff: pointers, oid miss, content-key hit", diff, skip),
            ("GIT_LFS_SKIP_SMUDGE=1 git diff: pointers, oid hit (object not read)", diff, skip),
        ]
        outputs = []
        for label, cmd, e in cases:
            wall, rss, out = measure(cmd, repo, e)
            outputs.append(out)
            changed = [
                ln for ln in out.decode().splitlines() if ln.startswith(("-model.", "+model."))
            ]
            rows.append((label, wall, rss, len(changed)))
        if len({o for o in outputs}) != 1:
            raise SystemExit("outputs differ between cases: a bug")
        for mode in ([], ["--fast"]):
            tc = [sys.executable, "-m", "model_diff", "textconv", str(v1_copy), *mode]
            measure(tc, work, no_cache)  # page cache warm
            best = min(measure(tc, work, no_cache)[:2] for _ in range(2))
            rows.append(
                (
                    f"model-diff textconv {' '.join(mode) or '(full)'} (cache off)",
                    best[0],
                    best[1],
                    0,
                )
            )
            results[f"textconv{mode[0] if mode else ''}_s_per_gib"] = best[0] / (size / 2**30)
        small = work / "small.safetensors"
        spans_small = write_small(small)
        tc = [sys.executable, "-m", "model_diff", "textconv", str(small)]
        measure(tc, work, no_cache)
        best = min(measure(tc, work, no_cache)[:2] for _ in range(5))
        rows.append(
            (
                f"model-diff textconv, small file ({spans_small} tensors; startup)",
                best[0],
                best[1],
                0,
            )
        )
        results["textconv_small_file_s"] = best[0]
        base = min(measure([sys.executable, "-c", "import numpy"], work, env)[0] for _ in range(5))
        rows.append(("python -c 'import numpy' (the floor)", base, 0, 0))
        results["rows"] = [
            {"case": r[0], "seconds": r[1], "peak_rss_bytes": r[2], "changed_lines": r[3]}
            for r in rows
        ]
        print(
            f"| case ({size / 2**30:.2f} GiB, 1 of {n_tensors} tensors changed) "
            "| wall s | peak RSS MiB | -/+ tensor lines |"
        )
        print("|---|---:|---:|---:|")
        for label, wall, rss, changed in rows:
            mib = f"{rss / 2**20:.0f}" if rss else ""
            print(f"| {label} | {wall:.2f} | {mib} | {changed or ''} |")
        print(
            f"\ntextconv: {results['textconv_s_per_gib']:.2f} s/GiB full, "
            f"{results['textconv--fast_s_per_gib']:.2f} s/GiB --fast; metrics backend "
            f"{results['metrics_backend']}; {results['cpus']} CPUs, load average "
            f"{results['load_average_at_start']:.1f} at start, {results['git']}"
        )
        out_dir = ROOT / "bench" / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "git.json").write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
