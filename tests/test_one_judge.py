"""One judge: the gate (check, ci) and the reports rendered under the same policy say the same.

The pair has what used to make them disagree: frozen embeddings, rotary ``inv_freq`` buffers,
a BatchNorm with running statistics (buffers that stay bit-identical) and a tensor at cosine
0.7. ``check --format json --policy P`` and ``compare --policy P --format json`` must list the
same (code, tensors, level) findings, ``ci`` too, and no buffer may be called frozen anywhere.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

import model_diff.report
from model_diff import toy
from model_diff.cli import cli
from tests.conftest import run_model_diff

POLICY = """\
[tool.model-diff.check]
min_cosine = 0.8
max_relative_change = 0.5
[tool.model-diff.check.severity]
"sign-flips" = "error"
"change-pattern" = "warning"
"""
BUFFERS = (
    "model.layers.0.self_attn.rotary_emb.inv_freq",
    "model.layers.1.self_attn.rotary_emb.inv_freq",
    "vision.bn1.running_mean",
    "vision.bn1.running_var",
    "vision.bn1.num_batches_tracked",
)
ROTATED = "model.layers.1.self_attn.q_proj.weight"


def _pair() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    base = toy.toy_transformer(n_blocks=2, d_model=16, vocab=32)
    for i in (0, 1):
        base[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = 1.0 / (
            10000 ** (np.arange(0, 8, dtype=np.float32) / 8)
        )
    rng = np.random.default_rng(3)
    base["vision.bn1.weight"] = np.ones(8, np.float32)
    base["vision.bn1.bias"] = np.zeros(8, np.float32)
    base["vision.bn1.running_mean"] = rng.standard_normal(8).astype(np.float32)
    base["vision.bn1.running_var"] = rng.random(8).astype(np.float32) + 0.5
    base["vision.bn1.num_batches_tracked"] = np.array(1000, np.int64)
    new = toy.fine_tune(base, seed=1, frozen=("model.embed_tokens.weight", *BUFFERS))
    # A tensor at cosine 0.7 with its old value (same norm): 0.7 a + sqrt(0.51) b, b ⟂ a.
    a = base[ROTATED].astype(np.float64).ravel()
    b = rng.standard_normal(a.size)
    b -= a * (a @ b) / (a @ a)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    rotated = 0.7 * a + np.sqrt(1 - 0.49) * b
    new[ROTATED] = rotated.astype(np.float32).reshape(base[ROTATED].shape)
    return base, new


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    base, new = _pair()
    toy.save_safetensors(tmp_path / "old.safetensors", base)
    toy.save_safetensors(tmp_path / "new.safetensors", new)
    (tmp_path / "policy.toml").write_text(POLICY)
    return {
        "old": tmp_path / "old.safetensors",
        "new": tmp_path / "new.safetensors",
        "policy": tmp_path / "policy.toml",
    }


def _invoke(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout


def _gate_findings(doc: dict[str, Any]) -> set[tuple[str, tuple[str, ...], str]]:
    (f,) = doc["files"]
    return {(v["code"], tuple(v["tensors"]), v["level"]) for v in f["violations"]}


def _report_findings(doc: dict[str, Any]) -> set[tuple[str, tuple[str, ...], str]]:
    return {
        (i["code"], tuple(i["evidence"]["tensors"]), i["level"])
        for i in doc["analysis"]["insights"]
        if i["level"] in ("error", "warning")
    }


def test_check_and_the_report_under_one_policy_list_the_same_findings(
    files: dict[str, Path],
) -> None:
    """check --format json and compare --format json under one policy: same (code, tensors,
    level); the frozen embedding and the cosine-0.7 tensor are there, no buffer is frozen."""
    old, new, policy = str(files["old"]), str(files["new"]), str(files["policy"])
    code, out = _invoke("check", old, new, "--policy", policy, "--format", "json")
    assert code == 1
    gate = _gate_findings(json.loads(out))
    code, out = _invoke("compare", old, new, "--policy", policy, "--format", "json")
    assert code == 0
    report = json.loads(out)
    schema = json.loads((Path(model_diff.report.__file__).parent / "schema.json").read_text())
    jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)
    assert _report_findings(report) == gate
    by_code = {c: (t, lvl) for c, t, lvl in gate}
    assert by_code["frozen-layers"] == (("model.embed_tokens.weight",), "error")
    assert by_code["low-cosine"] == ((ROTATED,), "error")
    assert by_code["change-pattern"][1] == "warning"  # the policy's severity override
    frozen = next(i for i in report["analysis"]["insights"] if i["code"] == "frozen-layers")
    assert sorted(frozen["evidence"]["buffers"]) == sorted(BUFFERS)
    assert report["analysis"]["frozen_layers"] == ["model.embed_tokens.weight"]
    assert report["analysis"]["stats"]["buffers"] == len(BUFFERS)
    cos = next(i for i in report["analysis"]["insights"] if i["code"] == "low-cosine")
    assert cos["evidence"]["cosine_sim"][ROTATED] == pytest.approx(0.7, abs=1e-4)
    assert cos["evidence"]["threshold"] == 0.8  # the policy's, not the analyzer's 0.9


def test_without_a_policy_the_report_has_no_levels_but_the_same_frozen_rule(
    files: dict[str, Path],
) -> None:
    """No policy: insights carry no level; the frozen rule is the gate's (no buffer)."""
    code, out = _invoke("compare", str(files["old"]), str(files["new"]), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert all("level" not in i for i in doc["analysis"]["insights"])
    assert doc["analysis"]["frozen_layers"] == ["model.embed_tokens.weight"]


def test_text_markdown_and_html_reports_show_each_level(files: dict[str, Path]) -> None:
    """Rendered under the policy, every format shows the level next to each finding."""
    old, new, policy = str(files["old"]), str(files["new"]), str(files["policy"])
    _, text = _invoke("compare", old, new, "--policy", policy)
    text = " ".join(text.split())  # the terminal report wraps at 80 columns
    assert "(frozen-layers) -> policy: error" in text
    assert "(low-cosine) -> policy: error" in text
    _, md = _invoke("compare", old, new, "--policy", policy, "--format", "markdown")
    assert "(`frozen-layers`) **policy: error**" in md
    _, page = _invoke("compare", old, new, "--policy", policy, "--format", "html")
    assert '<span class="level error">policy: error</span>' in page


def test_ci_and_its_report_agree_with_check(
    files: dict[str, Path], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """ci over a commit that made the same change: the same findings in its JSON and in the
    Markdown report (the PR summary) it writes, and the detail report shows the levels."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, env=clean_env, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (repo / "pyproject.toml").write_text(POLICY)
    (repo / "model.safetensors").write_bytes(files["old"].read_bytes())
    git("add", ".")
    git("commit", "-qm", "base")
    (repo / "model.safetensors").write_bytes(files["new"].read_bytes())
    git("commit", "-qam", "step")
    report = tmp_path / "report.md"
    r = run_model_diff(
        ["ci", "--base", "HEAD~1", "--format", "json", "--report", str(report)],
        clean_env,
        cwd=repo,
    )
    assert r.returncode == 1, r.stderr
    ci = _gate_findings(json.loads(r.stdout))
    old, new, policy = str(files["old"]), str(files["new"]), str(files["policy"])
    _, out = _invoke("check", old, new, "--policy", policy, "--format", "json")
    assert ci == _gate_findings(json.loads(out))
    summary, detail = report.read_text().split("\n---\n", 1)
    for code_, _, level in ci:
        assert f"| {level} | {code_} |" in summary
        assert f"(`{code_}`) **policy: {level}**" in detail
    # `model-diff diff` under the same policy: the file's report carries the same findings.
    r = run_model_diff(
        ["diff", "HEAD~1", "HEAD", "--policy", "pyproject.toml", "--format", "json"],
        clean_env,
        cwd=repo,
    )
    assert r.returncode == 0, r.stderr
    (f,) = json.loads(r.stdout)["files"]
    assert _report_findings(f["report"]) == ci
