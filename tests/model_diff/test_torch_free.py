"""Acceptance 8: PyTorch files need no torch. inspect, compare, check and the textconv give
byte-identical output in a process where ``import torch`` fails."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff.cli import cli
from tests.conftest import run_model_diff
from tests.model_diff.formats.factories import save_pt

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _states() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    old = {
        "model.embed.weight": rng.standard_normal((32, 8)).astype(np.float32),
        "model.layers.0.attn.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "model.layers.0.mlp.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "model.norm.weight": np.ones(8, np.float32),
    }
    new = dict(old)
    new["model.layers.0.mlp.weight"] = old["model.layers.0.mlp.weight"] + np.float32(0.01)
    return old, new


def test_same_output_without_torch(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """inspect, compare, check and textconv on a zip and a legacy .pt: identical stdout and
    exit code with torch installed (here, in-process) and with torch made unimportable (a
    subprocess whose ``import torch`` fails)."""
    old, new = _states()
    opt = {"state": {}, "param_groups": [{"params": [0, 1, 2, 3]}]}
    a = save_pt(tmp_path / "a.pt", old, wrap="model", extra={"optimizer": opt, "step": 1})
    b = save_pt(
        tmp_path / "b.pth", new, wrap="model", extra={"optimizer": opt, "step": 2}, legacy=True
    )
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    no_torch = dict(clean_env, PYTHONPATH=os.pathsep.join([str(blocker), clean_env["PYTHONPATH"]]))
    commands = [
        ["inspect", str(a)],
        ["inspect", str(b)],
        ["compare", str(a), str(b), "--format", "json"],
        ["check", str(a), str(b)],
        ["textconv", str(a)],
        ["textconv", str(b)],
    ]
    for cmd in commands:
        with_torch = CliRunner().invoke(cli, cmd)
        without = run_model_diff(cmd, no_torch, cwd=tmp_path)
        assert with_torch.exit_code in (0, 1), (cmd, with_torch.output)
        assert (without.returncode, without.stdout) == (with_torch.exit_code, with_torch.stdout), (
            cmd
        )
        assert "Traceback" not in without.stderr
    # the blocker really blocks torch
    r = run_model_diff(["inspect", "--unsafe-pickle", str(a)], no_torch)
    assert r.returncode == 2 and "model-diff[torch]" in r.stderr
