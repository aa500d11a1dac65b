"""The check policy: defaults, where it is read from, and loud failure on bad keys/values."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from model_diff.hooks.policy import (
    DEFAULT_MAX_RELATIVE_CHANGE,
    DEFAULT_MIN_COSINE,
    Policy,
    load_policy,
    load_policy_file,
    policy_from_mapping,
)

from model_diff import toy
from model_diff.errors import PolicyError
from tests.conftest import run_model_diff

from .conftest import base_state, git, healthy_step


def test_defaults_without_config(tmp_path: Path) -> None:
    """No pyproject and no --policy: documented defaults, nothing allowed frozen."""
    p = load_policy(cwd=tmp_path, top_level=tmp_path)
    assert p == Policy()
    assert (p.min_cosine, p.max_relative_change) == (
        DEFAULT_MIN_COSINE,
        DEFAULT_MAX_RELATIVE_CHANGE,
    )
    assert p.levels["frozen-layers"] == "error"
    assert p.levels["dtype-changed"] == "warning"
    config = p.analysis_config()
    assert config.allowed_frozen == () and config.levels == p.levels
    assert (config.low_cosine_threshold, config.significant_change_threshold) == (0.5, 1.0)


def test_pyproject_found_by_walking_up_to_the_top_level(tmp_path: Path) -> None:
    """A pyproject.toml above the working directory (inside the repo) supplies the policy."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.model-diff.check]\nallow_frozen = ["model.embed_*"]\n'
        "min_cosine = 0.9\nmax_relative_change = inf\n"
        '[tool.model-diff.check.severity]\n"dtype-changed" = "error"\n'
        '"change-pattern" = "ignore"\n'
    )
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    p = load_policy(cwd=sub, top_level=tmp_path)
    assert p.allow_frozen == ("model.embed_*",)
    assert p.min_cosine == 0.9 and math.isinf(p.max_relative_change)
    assert p.levels["dtype-changed"] == "error" and p.levels["change-pattern"] == "ignore"
    assert p.analysis_config().allowed_frozen == ("model.embed_*",)
    assert p.source == str(tmp_path / "pyproject.toml")


def test_pyproject_above_the_top_level_is_not_read(tmp_path: Path) -> None:
    """The walk stops at the git top level: an unrelated parent pyproject is ignored."""
    (tmp_path / "pyproject.toml").write_text("[tool.model-diff.check]\nmin_cosine = 0.9\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    assert load_policy(cwd=repo, top_level=repo) == Policy()


def test_policy_file_plain_toml_and_pyproject(tmp_path: Path) -> None:
    """--policy accepts a bare TOML table or a pyproject.toml holding [tool.model-diff.check]."""
    bare = tmp_path / "policy.toml"
    bare.write_text('allow_frozen = "lm_head.*"\nfail_on = "warning"\n')
    p = load_policy_file(bare)
    assert p.allow_frozen == ("lm_head.*",) and p.fail_on == "warning"
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.model-diff.check]\nmax_relative_change = 0.25\n")
    assert load_policy(pyproject, cwd=tmp_path).max_relative_change == 0.25


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"allow_frozn": ["x"]}, "'allow_frozn'"),
        ({"min_cosine": "high"}, "'min_cosine'"),
        ({"min_cosine": 2.0}, "'min_cosine'"),
        ({"min_cosine": True}, "'min_cosine'"),
        ({"max_relative_change": -1}, "'max_relative_change'"),
        ({"allow_frozen": [1, 2]}, "'allow_frozen'"),
        ({"fail_on": "errors"}, "'fail_on'"),
        ({"severity": {"dtype-changd": "error"}}, "'dtype-changd'"),
        ({"severity": {"dtype-changed": "fatal"}}, "'severity.dtype-changed'"),
        ({"severity": {"nonfinite-values": "warning"}}, "'severity.nonfinite-values'"),
        ({"severity": "strict"}, "'severity'"),
    ],
)
def test_bad_key_or_value_raises_naming_key_and_file(table: dict[str, object], needle: str) -> None:
    """Typos and malformed values are PolicyError naming the key and the file (exit 2)."""
    with pytest.raises(PolicyError) as e:
        policy_from_mapping(table, "conf/policy.toml")
    assert needle in str(e.value) and "conf/policy.toml" in str(e.value)
    assert e.value.exit_code == 2


def test_invalid_toml_and_missing_file_are_policy_errors(tmp_path: Path) -> None:
    """Unparseable TOML and a missing --policy file name the file."""
    bad = tmp_path / "bad.toml"
    bad.write_text("min_cosine = \n")
    with pytest.raises(PolicyError, match=r"bad\.toml: not valid TOML"):
        load_policy_file(bad)
    with pytest.raises(PolicyError, match=r"nope\.toml: policy file not found"):
        load_policy_file(tmp_path / "nope.toml")


def test_cli_policy_file_typo_exits_2_naming_the_key(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Acceptance 4: `check --policy FILE` with a typo'd key exits 2 and names key and file."""
    a = base_state()
    toy.save_safetensors(tmp_path / "a.safetensors", a)
    toy.save_safetensors(tmp_path / "b.safetensors", healthy_step(a))
    pol = tmp_path / "policy.toml"
    pol.write_text('allow_frozen = ["x"]\nmax_relativ_change = 2.0\n')
    r = run_model_diff(
        [
            "check",
            str(tmp_path / "a.safetensors"),
            str(tmp_path / "b.safetensors"),
            "--policy",
            str(pol),
        ],
        clean_env,
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert "'max_relativ_change'" in r.stderr and "policy.toml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_pyproject_typo_in_repo_exits_2(
    tmp_path: Path, clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """A typo in the repo's pyproject [tool.model-diff.check] fails `check --staged` with 2."""
    repo = repo_factory()
    (repo / "pyproject.toml").write_text('[tool.model-diff.check]\nalow_frozen = ["x"]\n')
    toy.save_safetensors(repo / "m.safetensors", base_state())
    git(repo, "add", "m.safetensors", env=clean_env)
    r = run_model_diff(["check", "--staged", "m.safetensors"], clean_env, cwd=repo)
    assert r.returncode == 2
    assert "'alow_frozen'" in r.stderr and "pyproject.toml" in r.stderr
