"""Benchmark: peak memory on a compressed .npz "bomb" (a ~2 MB archive inflating to 2 GiB).

Writes an .npz whose one float32 member of zeros inflates to ``--inflated-mib`` (default
2048; the archive is streamed out, never held), then runs ``model-diff health`` and
``model-diff textconv`` on it as fresh processes and reports wall time and peak RSS (GNU time
``%M``). The reader inflates compressed members in bounded steps (into an unlinked temporary
file beyond 16 MiB), so peak RSS should stay far below the inflated size.

    python bench/bounds.py [--inflated-mib 2048] [--workdir DIR]

Numbers go to stdout (a Markdown table) and to ``bench/out/bounds.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TIME = shutil.which("time", path="/usr/bin:/bin") or "/usr/bin/time"


def write_bomb(path: Path, nbytes: int) -> None:
    n = nbytes // 4
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (n,)}
    )
    zero = bytes(1 << 20)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("w.npy", "w", force_zip64=True) as f,
    ):
        f.write(header.getvalue())
        left = n * 4
        while left:
            k = min(left, len(zero))
            f.write(zero[:k])
            left -= k


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [TIME, "-f", "MAXRSS_KB %M", *cmd], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    rss_kb = int(proc.stderr.rsplit("MAXRSS_KB ", 1)[1].split()[0])
    return wall, rss_kb * 1024, proc.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inflated-mib", type=int, default=2048)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="model-diff-bounds-", dir=args.workdir))
    try:
        bomb = work / "bomb.npz"
        write_bomb(bomb, args.inflated_mib << 20)
        env = dict(os.environ, PYTHONPATH=str(ROOT), MODEL_DIFF_NO_CACHE="1", TMPDIR=str(work))
        rows = []
        for name in ("health", "textconv"):
            wall, rss, out = measure([sys.executable, "-m", "model_diff", name, str(bomb)], env)
            if name == "health" and "0 unreadable" not in out:
                raise SystemExit(f"health did not read the archive: {out}")
            rows.append({"command": name, "seconds": wall, "peak_rss_bytes": rss})
        size = bomb.stat().st_size
        head = f"{size / 1e6:.1f} MB .npz inflating to {args.inflated_mib} MiB"
        print(f"| {head} | wall s | peak RSS MiB |")
        print("|---|---:|---:|")
        for r in rows:
            mib = int(r["peak_rss_bytes"]) / 2**20
            print(f"| model-diff {r['command']} | {float(r['seconds']):.2f} | {mib:.0f} |")
        out_dir = ROOT / "bench" / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        result = {"archive_bytes": size, "inflated_bytes": args.inflated_mib << 20, "rows": rows}
        (out_dir / "bounds.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
