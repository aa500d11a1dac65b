"""`python -m model_diff` is immune to a `hooks/` or `gitdriver/` package in the current
folder: ours are `model_diff.hooks` and `model_diff.gitdriver`, never top-level names."""

from __future__ import annotations

from pathlib import Path

from model_diff.toy import fine_tune, save_safetensors, toy_transformer
from tests.conftest import run_model_diff


def test_a_users_hooks_and_gitdriver_packages_are_never_imported(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """In a folder whose `hooks` and `gitdriver` packages raise on import (and which is
    first on sys.path under `python -m`), check, textconv and --version run ours."""
    for pkg in ("hooks", "gitdriver"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(
            f"raise RuntimeError('the user\\'s {pkg} package was imported')\n"
        )
    base = toy_transformer(n_blocks=1, d_model=8, vocab=16, seed=0)
    save_safetensors(tmp_path / "a.safetensors", base)
    save_safetensors(tmp_path / "b.safetensors", fine_tune(base, seed=1))
    runs = [
        ["check", "a.safetensors", "b.safetensors"],
        ["textconv", "a.safetensors"],
        ["health", "a.safetensors"],
        ["--version"],
    ]
    for args in runs:
        r = run_model_diff(args, clean_env, cwd=tmp_path)
        assert "package was imported" not in r.stdout + r.stderr, (args, r.stdout, r.stderr)
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (args, r.stderr)
    assert run_model_diff(runs[1], clean_env, cwd=tmp_path).stdout.startswith(
        "model-diff textconv v1"
    )
