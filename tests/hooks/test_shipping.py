"""What we ship for hooks and CI is valid and documented: manifest, action.yml, the example
workflow of docs/ci.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
CI_DOC = (PROJECT_ROOT / "docs" / "ci.md").read_text(encoding="utf-8")


def ci_section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", CI_DOC, re.S | re.M)
    assert m, f"docs/ci.md has no '## {title}' section"
    return m.group(1)


def test_every_hook_id_is_documented() -> None:
    """Each id in .pre-commit-hooks.yaml is documented in docs/ci.md and shown in the README."""
    hooks = yaml.safe_load((PROJECT_ROOT / ".pre-commit-hooks.yaml").read_text())
    ids = [h["id"] for h in hooks]
    assert ids == ["model-diff-check", "model-diff-health"]
    section = ci_section("pre-commit hooks")
    for hook_id in ids:
        assert f"`{hook_id}`" in section, hook_id
        assert f"- id: {hook_id}" in section, hook_id
        assert f"- id: {hook_id}" in README, hook_id


def test_manifest_hooks_pull_no_torch_and_match_lfs_pointers() -> None:
    """language: python without torch deps; files regex (not types: [binary]); serial."""
    for h in yaml.safe_load((PROJECT_ROOT / ".pre-commit-hooks.yaml").read_text()):
        assert h["language"] == "python" and h["require_serial"] is True
        assert "types" not in h and "additional_dependencies" not in h
        files = re.compile(h["files"])
        for name in ("a/model.safetensors", "x.pt", "x.pth", "pytorch_model.bin", "m.ckpt"):
            assert files.search(name), name
        assert not files.search("README.md")
        assert set(h["stages"]) == {"pre-commit", "pre-push", "manual"}
    deps = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"torch\b", d)]


def test_shipped_files_list_exactly_the_readers_extensions() -> None:
    """The pre-commit manifest, install's default attributes and action.yml's default name
    the checkpoint extensions of the readers' registry, in any letter case."""
    from model_diff.gitdriver.attributes import DEFAULT_PATTERNS, lower_form

    from model_diff.formats import CHECKPOINT_EXTENSIONS

    exts = set(CHECKPOINT_EXTENSIONS)
    for h in yaml.safe_load((PROJECT_ROOT / ".pre-commit-hooks.yaml").read_text()):
        m = re.fullmatch(r"\(\?i\)\\\.\(([a-z0-9|]+)\)\$", h["files"])
        assert m, h["files"]
        assert {"." + e for e in m.group(1).split("|")} == exts
        files = re.compile(h["files"])
        assert files.search("ckpt/MODEL.SAFETENSORS") and files.search("w.Bin")
    assert {lower_form(p)[1:] for p in DEFAULT_PATTERNS} == exts
    action = yaml.safe_load((PROJECT_ROOT / "action.yml").read_text())
    default = action["inputs"]["paths"]["description"].split("Default:")[1]
    assert "any letter case" in default
    assert set(re.findall(r"\.[a-z][a-z0-9]*\b", default)) == exts


def test_documented_local_hook_matches_the_manifest() -> None:
    """The local-hook example of docs/ci.md uses the manifest's files pattern and stages."""
    manifest = yaml.safe_load((PROJECT_ROOT / ".pre-commit-hooks.yaml").read_text())
    blocks = re.findall(r"```yaml\n(.*?)```", ci_section("pre-commit hooks"), re.S)
    local = [
        h
        for b in blocks
        for r in yaml.safe_load(b)["repos"]
        if r["repo"] == "local"
        for h in r["hooks"]
    ]
    assert [h["id"] for h in local] == ["model-diff-check"]
    assert local[0]["files"] == manifest[0]["files"]
    assert local[0]["stages"] == manifest[0]["stages"] and local[0]["require_serial"] is True


def test_every_action_input_is_documented() -> None:
    """Each input of action.yml has a row in docs/ci.md's input table; each output is named."""
    action = yaml.safe_load((PROJECT_ROOT / "action.yml").read_text())
    section = ci_section("GitHub Actions")
    assert set(action["inputs"]) >= {"base", "paths", "fail-on", "policy"}
    for name in action["inputs"]:
        assert f"| `{name}` |" in section, name
    for name in action["outputs"]:
        assert f"`{name}`" in section, name


def test_action_is_a_valid_composite_action() -> None:
    """Acceptance 5: valid YAML, runs.using composite, shell on every run step, schema-valid."""
    action = yaml.safe_load((PROJECT_ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    run_steps = [s for s in steps if "run" in s]
    assert run_steps and all(s.get("shell") == "bash" for s in run_steps)
    script = "\n".join(s["run"] for s in run_steps)
    assert 'git fetch --no-tags --depth=1 origin "$BASE"' in script
    assert "git lfs fetch origin" in script and "model-diff" in script
    assert "${{" not in script  # inputs reach scripts through env, never spliced in
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-actions",
            str(PROJECT_ROOT / "action.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_readme_workflow_is_a_valid_workflow_using_the_action(tmp_path: Path) -> None:
    """docs/ci.md's example workflow passes the workflow schema and uses LFS checkout."""
    m = re.search(r"<!-- model-diff: example workflow -->\n```yaml\n(.*?)```", CI_DOC, re.S)
    assert m
    wf = tmp_path / "checkpoints.yml"
    wf.write_text(m.group(1))
    doc = yaml.safe_load(m.group(1))
    steps = doc["jobs"]["model-diff"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[0]["with"]["lfs"] is True
    assert any(s.get("uses", "").startswith("model-diff/model-diff@") for s in steps)
    assert doc["permissions"] == {"contents": "read"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(wf),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
