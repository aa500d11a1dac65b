"""compare_training_stages and ``model-diff timeline`` over a sequence of checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff import compare_training_stages
from model_diff.checkpoint import Checkpoint, from_arrays
from model_diff.cli import cli
from model_diff.errors import ModelDiffError
from model_diff.report.timeline import render_json, render_text
from model_diff.timeline import run_timeline, sources_from
from model_diff.toy import fine_tune, save_safetensors, toy_transformer
from tests.conftest import run_model_diff


def _stages() -> list[dict[str, np.ndarray]]:
    """Step 1 trains everything but the embeddings; step 2 freezes block 0 as well."""
    s0 = toy_transformer(n_blocks=4, d_model=16, vocab=32, seed=0)
    s1 = fine_tune(s0, seed=1)
    s2 = fine_tune(
        s1, seed=2, frozen=lambda n: n.startswith(("model.layers.0.", "model.embed_tokens"))
    )
    return [s0, s1, s2]


def _checkpoints() -> list[Checkpoint]:
    return [from_arrays(sd, path=f"step{i}") for i, sd in enumerate(_stages())]


def test_rows_follow_each_block_across_steps() -> None:
    """Each block gets one change per step; a block frozen in step 2 shows 0.0 there."""
    result = compare_training_stages(_checkpoints())
    assert result["checkpoints"] == ["step0", "step1", "step2"]
    assert [(s["from"], s["to"]) for s in result["steps"]] == [
        ("step0", "step1"),
        ("step1", "step2"),
    ]
    rows = {r["label"]: r for r in result["rows"]}
    assert [r["label"] for r in result["rows"]][:2] == ["embedding", "model.layers.0"]
    block0 = rows["model.layers.0"]
    assert block0["kind"] == "block" and block0["depth"] == 0.0
    assert block0["changes"][0] > 0.0 and block0["changes"][1] == 0.0
    assert block0["trend"] == "falling"
    assert rows["embedding"]["changes"] == [0.0, 0.0] and rows["embedding"]["trend"] == "frozen"
    # later blocks move more in every step (fine_tune's depth weighting)
    last = rows["model.layers.3"]["changes"]
    assert all(x > y for x, y in zip(last, rows["model.layers.1"]["changes"], strict=True))
    assert result["steps"][0]["change_pattern"] == "inverse_gradient"
    assert "frozen-layers" in [i["code"] for i in result["steps"][1]["insights"]]


def test_step_values_equal_a_direct_block_aggregate() -> None:
    """A row's value is sqrt(sum ||delta||^2 / sum ||old||^2) over the block's tensors."""
    s0, s1, _ = _stages()
    result = compare_training_stages([from_arrays(s0), from_arrays(s1)])
    names = [n for n in s0 if n.startswith("model.layers.2.")]
    num = sum(float(np.sum((s1[n].astype(np.float64) - s0[n]) ** 2)) for n in names)
    den = sum(float(np.sum(s0[n].astype(np.float64) ** 2)) for n in names)
    (row,) = [r for r in result["rows"] if r["label"] == "model.layers.2"]
    assert row["changes"][0] == pytest.approx(np.sqrt(num / den), rel=1e-9)


def test_text_and_json_renderings_are_deterministic() -> None:
    """Same checkpoints -> identical text and strict JSON; text lists steps and blocks."""
    a = run_timeline(sources_from(_checkpoints()))
    b = run_timeline(sources_from(_checkpoints()))
    assert render_json(a) == render_json(b)
    assert json.loads(render_json(a))["rows"] == compare_training_stages(_checkpoints())["rows"]
    text = render_text(a)
    assert text == render_text(b)
    assert "step 1: step0 -> step1" in text and "step 2: step1 -> step2" in text
    assert "model.layers.0" in text and "0 (frozen)" in text and "falling" in text


def test_labels_override_names_and_one_checkpoint_is_an_error() -> None:
    """labels= names the checkpoints; fewer than two checkpoints is a typed usage error."""
    result = compare_training_stages(_checkpoints(), labels=["a", "b", "c"])
    assert result["checkpoints"] == ["a", "b", "c"]
    with pytest.raises(ModelDiffError, match="at least two checkpoints"):
        compare_training_stages(_checkpoints()[:1])


def test_cli_timeline_with_one_checkpoint_is_a_usage_error() -> None:
    """``model-diff timeline X`` exits 2 with a message and writes nothing to stdout."""
    res = CliRunner().invoke(cli, ["timeline", "only.safetensors"])
    assert res.exit_code == 2
    assert res.stdout == ""
    assert "at least two checkpoints" in res.stderr


def _write_stages(tmp_path: Path) -> list[str]:
    paths = []
    for i, sd in enumerate(_stages()):
        p = tmp_path / f"step{i}.safetensors"
        save_safetensors(p, sd)
        paths.append(str(p))
    return paths


def test_cli_timeline_text_and_json_on_safetensors_files(tmp_path: Path) -> None:
    """``model-diff timeline a b c`` prints the table; --format json -o writes strict JSON."""
    paths = _write_stages(tmp_path)
    res = CliRunner().invoke(cli, ["timeline", *paths])
    assert res.exit_code == 0, res.stderr
    assert f"step 2: {paths[1]} -> {paths[2]}" in res.stdout
    assert "model.layers.0" in res.stdout and "falling" in res.stdout
    out = tmp_path / "timeline.json"
    res = CliRunner().invoke(cli, ["timeline", *paths, "--format", "json", "-o", str(out)])
    assert res.exit_code == 0 and res.stdout == ""
    data = json.loads(out.read_text())
    assert data["checkpoints"] == paths
    assert [r["trend"] for r in data["rows"] if r["label"] == "model.layers.0"] == ["falling"]


def test_cli_timeline_missing_file_is_one_line_exit_2(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A missing checkpoint: exit 2, one error line naming it, nothing on stdout."""
    paths = _write_stages(tmp_path)
    missing = str(tmp_path / "nope.safetensors")
    res = run_model_diff(["timeline", paths[0], missing], clean_env)
    assert res.returncode == 2
    assert res.stdout == ""
    assert missing in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_compare_json_and_text_carry_pattern_and_insights(tmp_path: Path) -> None:
    """``model-diff compare`` shows the analysis: pattern and insight codes, text and JSON."""
    paths = _write_stages(tmp_path)
    res = CliRunner().invoke(cli, ["compare", paths[0], paths[1], "--format", "json"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    text = json.dumps(data)
    assert "inverse_gradient" in text and "frozen-layers" in text
    res = CliRunner().invoke(cli, ["compare", paths[0], paths[1]])
    assert res.exit_code == 0
    assert "inverse" in res.stdout.lower() and "frozen" in res.stdout.lower()
