"""The merge and compare3 commands: exit codes, stdout and stderr apart, nothing written on
conflicts or bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy as stn
from click.testing import CliRunner

from model_diff.cli import cli
from model_diff.toy import save_safetensors, toy_transformer
from tests.conftest import run_model_diff


@pytest.fixture
def triple(tmp_path: Path) -> dict[str, Path]:
    """base; ours changes the head; theirs changes block 1's MLP and, with ``conflict``, the
    head as well."""
    base = toy_transformer(n_blocks=2, d_model=8, vocab=16, seed=0)
    ours = dict(base, **{"lm_head.weight": base["lm_head.weight"] + np.float32(1)})
    up = "model.layers.1.mlp.up_proj.weight"
    theirs = dict(base, **{up: base[up] * np.float32(2)})
    conflict = dict(theirs, **{"lm_head.weight": base["lm_head.weight"] - np.float32(0.5)})
    paths = {}
    for name, state in (("base", base), ("ours", ours), ("theirs", theirs), ("conflict", conflict)):
        paths[name] = tmp_path / f"{name}.safetensors"
        save_safetensors(paths[name], state)
    return paths


def _merge(triple: dict[str, Path], theirs: str, out: Path, *extra: str) -> object:
    args = ["merge", str(triple["base"]), str(triple["ours"]), str(triple[theirs]), "-o", str(out)]
    return CliRunner().invoke(cli, [*args, *extra])


def test_clean_merge_exits_0_and_writes(triple: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged.safetensors"
    r = _merge(triple, "theirs", out)
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert r.stderr == ""  # type: ignore[attr-defined]
    assert "merged 21 tensors" in r.stdout and "1 from ours, 1 from theirs" in r.stdout  # type: ignore[attr-defined]
    got = stn.load_file(str(out))
    assert np.array_equal(
        got["lm_head.weight"], stn.load_file(str(triple["ours"]))["lm_head.weight"]
    )


def test_conflict_exits_1_lists_it_and_writes_nothing(
    triple: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "merged.safetensors"
    r = _merge(triple, "conflict", out)
    assert r.exit_code == 1  # type: ignore[attr-defined]
    assert r.stdout == ""  # type: ignore[attr-defined]
    err = r.stderr.splitlines()  # type: ignore[attr-defined]
    assert err[0] == "model-diff: merge: 1 conflicting tensor; nothing written"
    assert err[1] == "  CONFLICT (content) lm_head.weight"
    assert err[2].startswith("hint: resolve with --strategy")
    assert not out.exists()


def test_strategy_resolves_and_says_how(triple: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged.safetensors"
    r = _merge(triple, "conflict", out, "--strategy", "task-arithmetic")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "resolved content conflict by task-arithmetic: lm_head.weight" in r.stdout  # type: ignore[attr-defined]
    b, o, t = (
        stn.load_file(str(triple[k]))["lm_head.weight"] for k in ("base", "ours", "conflict")
    )
    want = (b.astype(np.float64) + (o - b.astype(np.float64)) + (t - b.astype(np.float64))).astype(
        np.float32
    )
    assert stn.load_file(str(out))["lm_head.weight"].tobytes() == want.tobytes()


def test_json_summary_is_strict_and_lists_every_tensor(
    triple: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "merged.safetensors"
    r = _merge(triple, "conflict", out, "--format", "json")
    assert r.exit_code == 1  # type: ignore[attr-defined]
    doc = json.loads(r.stdout)  # type: ignore[attr-defined]
    assert doc["written"] is False and doc["conflicts"] == ["lm_head.weight"]
    assert len(doc["tensors"]) == 21 and doc["counts"]["conflict"] == 1


def test_training_checkpoint_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Acceptance 3, through the real entry point: exit 2, one line, nothing written."""
    pytest.importorskip("torch")
    from tests.model_diff.formats.factories import save_training_pt

    ckpt = save_training_pt(tmp_path / "train.ckpt", {"w": np.zeros(3, np.float32)})
    out = tmp_path / "out.ckpt"
    r = run_model_diff(["merge", str(ckpt), str(ckpt), str(ckpt), "-o", str(out)], clean_env)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "optimizer_state_dict" in lines[0] and "hint:" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "train.ckpt"]


def test_unreadable_input_is_a_usage_error(triple: dict[str, Path], tmp_path: Path) -> None:
    """A truncated THEIRS: the CheckpointError main() turns into exit 2; nothing written."""
    from model_diff.errors import CheckpointError

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(triple["base"].read_bytes()[:-5])
    out = tmp_path / "out.safetensors"
    args = ["merge", str(triple["base"]), str(triple["ours"]), str(bad), "-o", str(out)]
    r = CliRunner().invoke(cli, args)
    assert isinstance(r.exception, CheckpointError) and r.exception.exit_code == 2
    assert "truncated" in str(r.exception) and not out.exists()


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_compare3_renders_every_format(triple: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    args = ["compare3", *(str(triple[k]) for k in ("base", "ours", "conflict")), "--format", fmt]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    assert "lm_head.weight" in r.stdout.replace("<wbr>", "")
    out = tmp_path / f"report.{fmt}"
    r2 = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert r2.exit_code == 0 and r2.stdout == ""
    assert out.read_text(encoding="utf-8") == r.stdout
    if fmt == "json":
        assert json.loads(r.stdout)["readiness"]["conflicts"] == 1
    if fmt == "html":
        assert "<svg" in r.stdout


def test_merge_and_compare3_have_help() -> None:
    for name in ("merge", "compare3"):
        r = CliRunner().invoke(cli, [name, "--help"])
        assert r.exit_code == 0 and "BASE OURS THEIRS" in r.stdout
    r = CliRunner().invoke(cli, ["merge", "--help"])
    assert "task-arithmetic" in r.stdout and "--ties-k" in r.stdout


def test_compare3_report_output_follows_the_output_rules(
    triple: dict[str, Path], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """compare3 -o is checked before any work (a missing folder: exit 2, nothing read) and
    written by model_diff.output (through a symlink, the link kept)."""
    args = ["compare3", str(triple["base"]), str(triple["ours"]), str(triple["conflict"])]
    missing = ["compare3", "missing-a", "missing-b", "missing-c"]
    r = run_model_diff([*missing, "-o", str(tmp_path / "no" / "r.txt")], clean_env, cwd=tmp_path)
    assert r.returncode == 2 and "its folder does not exist" in r.stderr
    assert "missing-a" not in r.stderr
    target = tmp_path / "report.txt"
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    r = CliRunner().invoke(cli, [*args, "-o", str(link)])
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and target.read_text().startswith("model-diff three-way report")
