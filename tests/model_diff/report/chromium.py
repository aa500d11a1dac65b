"""Headless Chromium for the HTML tests: a fresh profile per run, no network, no GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=2000",
]


def run_chromium(tmp_path: Path, url: str, *extra: str) -> str:
    """Load ``url``; stdout (the DOM with ``--dump-dom``). Screenshots via ``--screenshot=``."""
    assert CHROMIUM is not None
    profile = tmp_path / "profile"  # a fresh profile: no state from any other run
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
