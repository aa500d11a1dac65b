"""The distribution: sdist and wheel build offline, the wheel holds exactly our packages and
its compiled kernel, and works when installed into a clean virtual environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

_SKIP = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.so",
    ".*_cache",
    "bench",
    "node_modules",
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built from a copy of the checkout (the working tree stays untouched)."""
    src = tmp_path_factory.mktemp("src") / "model-diff"
    shutil.copytree(PROJECT_ROOT, src, ignore=_SKIP)
    out = src.parent / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--sdist",
            "--wheel",
            "--outdir",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("*.tar.gz")), next(out.glob("*.whl"))


def test_wheel_holds_exactly_our_packages_and_the_kernel(dists: tuple[Path, Path]) -> None:
    """Top-level entries: model_diff and the dist-info only (gitdriver and hooks live inside
    model_diff, never as generic top-level import names); the .so is inside."""
    names = zipfile.ZipFile(dists[1]).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"model_diff"}
    assert "model_diff/gitdriver/textconv.py" in names and "model_diff/hooks/check.py" in names
    assert any(n.startswith("model_diff/kernel") and n.endswith((".so", ".pyd")) for n in names)
    assert "model_diff/kernel.pyi" in names and "model_diff/py.typed" in names
    assert not any("tests/" in n or n.endswith(".c") for n in names)


def test_sdist_carries_the_kernel_source(dists: tuple[Path, Path]) -> None:
    """The sdist can rebuild the extension: setup.py and kernel.c are in it."""
    with tarfile.open(dists[0]) as tar:
        names = tar.getnames()
    assert any(n.endswith("/model_diff/kernel.c") for n in names)
    assert any(n.endswith("/setup.py") for n in names)


def test_installed_wheel_imports_its_own_kernel(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """In a fresh venv (dependencies from the system), the wheel's kernel is the backend."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True,
        capture_output=True,
    )
    py = venv / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(dists[1])],
        check=True,
        capture_output=True,
    )
    probe = (
        "import model_diff, model_diff.kernel as k, model_diff.metrics as m; "
        "print(model_diff.__file__); print(k.__file__); print(m.BACKEND)"
    )
    out = subprocess.run(
        [py, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": str(venv / "bin"), "HOME": str(tmp_path)},
    )
    pkg, so, backend = out.stdout.split()
    assert pkg.startswith(str(venv)) and so.startswith(str(venv))
    assert backend == "kernel"
