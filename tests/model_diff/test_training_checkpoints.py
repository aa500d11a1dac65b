"""Training checkpoints as people save them: the weights are compared, the rest set aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from model_diff.cli import cli
from model_diff.diff import ModelDiff
from model_diff.formats import open_checkpoint
from tests.conftest import run_model_diff

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _speaker_encoder_save(path: Path, step: int, seed: int) -> Path:
    """``{step, model_state, optimizer_state}`` as a real speaker-encoder release saves it
    (legacy pickle), its Adam state keyed by Python object ids, which differ between saves."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "lstm.weight_ih_l0": (12, 4),
        "lstm.weight_hh_l0": (12, 3),
        "lstm.bias": (12,),
        "linear.weight": (2, 3),
        "linear.bias": (2,),
        "similarity_weight": (1,),
    }
    model = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
    params = [torch.nn.Parameter(t.clone()) for t in model.values()]  # fresh objects: fresh ids
    state = {
        id(p): {
            "step": torch.tensor(float(step)),
            "exp_avg": torch.randn(p.shape, generator=g),
            "exp_avg_sq": torch.rand(p.shape, generator=g),
        }
        for p in params
    }
    opt = {
        "state": state,
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [id(p) for p in params]}],
    }
    obj = {"step": step, "model_state": model, "optimizer_state": opt}
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    del params  # the ids may now be reused: the second save gets other ones
    return path


def test_resumed_training_checkpoint_compares_the_model_only(tmp_path: Path) -> None:
    """Acceptance 1: two saves of one run -> 0 added, 0 removed; only model_state's tensors
    compared; the optimizer listed as set aside (in the structure and on stderr)."""
    a = _speaker_encoder_save(tmp_path / "ckpt_1000.pt", 1000, seed=0)
    b = _speaker_encoder_save(tmp_path / "ckpt_2000.pt", 2000, seed=1)
    with open_checkpoint(a) as old, open_checkpoint(b) as new:
        assert set(old.tensors) == set(new.tensors) and len(old.tensors) == 6
        diffs, summary = ModelDiff().diff(old, new)
        assert summary.added_parameters == 0 and summary.removed_parameters == 0
        assert summary.total_parameters == 6 and {d.name for d in diffs} <= set(old.tensors)
        aside = [s for s in new.structure if not s.compared]
        assert [(s.path, s.kind, s.tensors, s.detail) for s in aside] == [
            ("optimizer_state", "optimizer", 18, "Adam state")
        ]
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "not compared: optimizer_state (18 tensors, Adam state)" in result.stderr
    assert '"added_parameters": 0' in result.stdout and '"removed_parameters": 0' in result.stdout


def test_include_optimizer_pairs_state_by_parameter_order(tmp_path: Path) -> None:
    """--include-optimizer compares the Adam moments too, paired by position in param_groups
    (the saved ids differ): still 0 added, 0 removed."""
    a = _speaker_encoder_save(tmp_path / "a.pt", 1, seed=0)
    b = _speaker_encoder_save(tmp_path / "b.pt", 2, seed=1)
    with (
        open_checkpoint(a, include_optimizer=True) as old,
        open_checkpoint(b, include_optimizer=True) as new,
    ):
        assert "optimizer_state.state.5.exp_avg_sq" in new.tensors
        _, summary = ModelDiff().diff(old, new)
        assert summary.added_parameters == 0 and summary.removed_parameters == 0
        assert summary.total_parameters == 6 + 18
    result = CliRunner().invoke(
        cli, ["compare", str(a), str(b), "--include-optimizer", "--format", "json"]
    )
    assert result.exit_code == 0 and '"total_parameters": 24' in result.stdout


def test_inspect_lists_each_part_and_what_was_set_aside(tmp_path: Path) -> None:
    """inspect shows every subtree with its tensor count, the optimizer as not compared (not
    among the non-tensor entries), and the weights' size, not the file's."""
    path = _speaker_encoder_save(tmp_path / "c.pt", 7, seed=0)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "  structure:  model_state: 6 tensors (model), compared" in out
    assert "optimizer_state: 18 tensors (Adam state), not compared" in out
    assert "skipped:    1 non-tensor entries: step" in out
    weights = 4 * (48 + 36 + 12 + 6 + 2 + 1)
    assert f"size:       {weights / 1e6:,.1f} MB" in out
    data = CliRunner().invoke(
        cli, ["inspect", str(path), "--format", "json", "--select", "optimizer_state"]
    )
    assert data.exit_code == 0, data.output
    assert '"num_tensors": 18' in data.stdout


def test_select_unknown_path_is_a_usage_error(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """--select naming no part of the file: exit 2, one line listing the parts."""
    path = _speaker_encoder_save(tmp_path / "c.pt", 7, seed=0)
    r = run_model_diff(["inspect", str(path), "--select", "ema"], clean_env)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1
    assert "no tensors under 'ema'" in r.stderr and "model_state" in r.stderr
