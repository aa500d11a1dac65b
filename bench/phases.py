"""Where one ``model-diff compare`` process spends its time, phase by phase.

Runs ``model-diff compare OLD NEW --format json`` through the real entry point
(``model_diff.__main__``) in this process, with timers wrapped around its steps: opening each
checkpoint, the pass over every tensor pair, the budgeted low-rank analysis, the analysis,
and the report; start-up is the time before the first open, and the end is taken in the last
exit handler (the entry point leaves with ``os._exit`` after the exit handlers). The report
goes to a temporary file that is deleted afterwards (never ``-o /dev/null``). Prints one line
per run. Not part of the test suite. Run from the repository root, on warm files, e.g. the
pair ``bench/engine.py --keep`` leaves:

    python bench/phases.py OLD NEW --runs 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import atexit, functools, sys, time
T0 = time.perf_counter()
marks = []

def timed(owner, name, label):
    f = getattr(owner, name)

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            marks.append((label, t - T0, time.perf_counter() - t))

    setattr(owner, name, wrapper)

def report():
    opens = [m for m in marks if m[0] == "open"]
    by = {m[0]: m for m in marks}
    diff = by["diff"][2] - (by["low-rank"][2] if "low-rank" in by else 0.0)
    parts = [("start-up", opens[0][1] if opens else 0.0), ("open", sum(m[2] for m in opens)),
             ("pass", diff)]
    parts += [(k, by[k][2]) for k in ("low-rank", "analysis", "report") if k in by]
    total = time.perf_counter() - T0
    print(" ".join(f"{k} {v:.3f}" for k, v in parts) + f" total {total:.3f}", file=sys.stderr)

atexit.register(report)
import model_diff.formats as formats
from model_diff import analysis, diff, pipeline
timed(formats, "open_checkpoint", "open")
timed(diff.ModelDiff, "_diff", "diff")
timed(diff.ModelDiff, "_auto_low_rank", "low-rank")
timed(analysis.DiffAnalyzer, "run", "analysis")
timed(pipeline.Comparison, "report", "report")
from model_diff.__main__ import main
main(sys.argv[1:])
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--runs", type=int, default=3, help="fresh processes (default 3)")
    args = ap.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_DIFF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory(prefix="model-diff-phases-") as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-c", _CHILD, "compare", args.old, args.new, "--format", "json"]
        for _ in range(args.runs):
            t = time.perf_counter()
            proc = subprocess.run(
                [*cmd, "-o", out], env=env, cwd=ROOT, capture_output=True, text=True, check=False
            )
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                sys.exit(f"compare failed (exit {proc.returncode}):\n{proc.stderr}")
            print(f"{proc.stderr.strip().splitlines()[-1]} (process {wall:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
