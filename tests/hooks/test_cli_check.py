"""`model-diff check OLD NEW` and `model-diff health` through the click CLI: exit codes, output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff import toy
from model_diff.cli import cli, main

from .conftest import base_state, frozen_step, healthy_step, nan_step


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def save(tmp_path: Path, name: str, state: dict[str, np.ndarray]) -> str:
    toy.save_safetensors(tmp_path / name, state)
    return str(tmp_path / name)


def test_check_exit_codes_clean_violation_unreadable(tmp_path: Path) -> None:
    """0 for a healthy step, 1 with the tensor names for NaN, 2 naming a truncated file."""
    a = base_state()
    old = save(tmp_path, "old.safetensors", a)
    code, out, err = run("check", old, save(tmp_path, "ok.safetensors", healthy_step(a)))
    assert (code, err) == (0, "") and out.startswith("model-diff check: 1 checkpoint(s): 0 failed")
    code, out, _ = run("check", old, save(tmp_path, "nan.safetensors", nan_step(a)))
    assert code == 1
    assert "nonfinite-values: NaN/Inf appeared in model.layers.0.mlp.up_proj.weight (3 NaN)." in out
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes((tmp_path / "ok.safetensors").read_bytes()[:200])
    code, out, _ = run("check", old, str(trunc))
    assert code == 2 and f"error: {trunc}:" in out


def test_check_needs_two_paths_without_staged(capsys: pytest.CaptureFixture[str]) -> None:
    """One path and no --staged is a usage error: one line on stderr, exit 2."""
    with pytest.raises(SystemExit) as e:
        main(["check", "x.safetensors"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("model-diff: error: check needs OLD and NEW") and err.count("\n") == 1


def test_check_fail_on_warning_and_never(tmp_path: Path) -> None:
    """A dtype change is a warning: exit 0 by default, 1 with --fail-on warning."""
    a = base_state()
    b = healthy_step(a)
    b["model.norm.weight"] = b["model.norm.weight"].astype(np.float16)
    old, new = save(tmp_path, "a.safetensors", a), save(tmp_path, "b.safetensors", b)
    assert run("check", old, new)[0] == 0
    assert run("check", old, new, "--fail-on", "warning")[0] == 1
    c = save(tmp_path, "c.safetensors", frozen_step(a, "lm_head"))
    assert run("check", old, c, "--fail-on", "never")[0] == 0
    assert run("check", old, c)[0] == 1


def test_check_json_is_strict_json_with_numbers(tmp_path: Path) -> None:
    """--format json: parseable without NaN, with each violation's tensors and numbers."""
    a = base_state()
    code, out, _ = run(
        "check",
        save(tmp_path, "a.safetensors", a),
        save(tmp_path, "b.safetensors", nan_step(a)),
        "--format",
        "json",
    )
    assert code == 1
    doc = json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    (f,) = doc["files"]
    assert f["status"] == "failed" and doc["counts"]["errors"] == 1
    (v,) = f["violations"]
    assert v["tensors"] == ["model.layers.0.mlp.up_proj.weight"] and v["numbers"]["nan"] == 3


def test_check_markdown_escapes_table_syntax(tmp_path: Path) -> None:
    """--format markdown: a tensor name with | < and a newline stays inside one table cell."""
    a = base_state()
    a["evil|<b>\nname"] = np.ones(3, dtype=np.float32)
    b = healthy_step(a)
    b["evil|<b>\nname"][0] = np.inf
    code, out, _ = run(
        "check",
        save(tmp_path, "a.safetensors", a),
        save(tmp_path, "b.safetensors", b),
        "--format",
        "markdown",
    )
    assert code == 1
    row = next(line for line in out.splitlines() if "nonfinite-values" in line)
    assert "evil\\|\\<b\\>\\\\nname (1 Inf)" in row  # md_text: specials backslashed
    assert row.count(" | ") == 3  # four cells


def test_health_codes_and_output(tmp_path: Path) -> None:
    """health: 0 clean, 1 Inf (naming tensor), 2 truncated; every file reported."""
    a = base_state()
    ok = save(tmp_path, "ok.safetensors", a)
    assert run("health", ok)[0] == 0
    a["lm_head.weight"][0, 0] = -np.inf
    bad = save(tmp_path, "inf.safetensors", a)
    code, out, _ = run("health", ok, bad)
    assert code == 1 and "lm_head.weight (1 Inf)" in out and out.count("\nok ") == 1
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(Path(ok).read_bytes()[:-10])
    code, out, _ = run("health", ok, bad, str(trunc))
    assert code == 2 and "UNREADABLE" in out and "FAILED" in out


def test_health_fails_on_tensors_it_cannot_check(tmp_path: Path) -> None:
    """A complex tensor (npz member, or beside NaN-free weights) is named and fails health;
    a policy can lower the finding to a warning, as the pre-commit hook reads it."""
    path = tmp_path / "m.npz"
    np.savez(path, w=np.ones(3, np.float32), spectrum=np.zeros(4, np.complex64))
    code, out, _ = run("health", str(path))
    assert code == 1
    assert "unchecked-tensors: 1 tensor(s) not checked (neither NaN/Inf nor changes): " in out
    assert "spectrum (dtype complex64 is not read by model-diff)" in out
    from model_diff.hooks.check import violations
    from model_diff.hooks.policy import policy_from_mapping

    from model_diff.analysis import DiffAnalyzer

    def health(levels: dict[str, str]) -> list[tuple[str, str, tuple[str, ...]]]:
        policy = policy_from_mapping({"severity": levels})
        found = DiffAnalyzer(policy.analysis_config()).health({}, {"spectrum": "dtype c64"})
        return [(v.code, v.level, v.tensors) for v in violations(found)]

    assert health({"unchecked-tensors": "warning"}) == [
        ("unchecked-tensors", "warning", ("spectrum",))
    ]
    assert health({"unchecked-tensors": "ignore"}) == []


def test_check_pair_names_tensors_it_cannot_compare(tmp_path: Path) -> None:
    """check OLD NEW: a new tensor that cannot be read is a violation, not a silent skip."""
    a = tmp_path / "a.npz"
    b = tmp_path / "b.npz"
    np.savez(a, w=np.ones(3, np.float32))
    np.savez(b, w=np.ones(3, np.float32) * 1.01, c=np.zeros(2, np.complex128))
    code, out, _ = run("check", str(a), str(b))
    assert code == 1 and "unchecked-tensors" in out and "c (dtype complex128" in out
